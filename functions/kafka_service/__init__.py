"""Any service of the policy as a Lambda fed by Kafka event source mappings (one handler)."""
