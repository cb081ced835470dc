"""Security of the mesh: who signed a record, whether it may be admitted, and what is parked."""
