"""``meshgate tail``: live calls on the mesh, decoded and verified."""
