"""The demo ``inventory`` service."""
