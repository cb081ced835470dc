"""The local stack: bringing it up and down (lifecycle), the demo service workers, the local OTLP
collector and its files, and the demo call."""
