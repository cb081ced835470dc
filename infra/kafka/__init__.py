"""The broker side of the stack: the topic plan from the policies and its Kafka admin adapter."""
