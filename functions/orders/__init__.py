"""The demo ``orders`` service."""
