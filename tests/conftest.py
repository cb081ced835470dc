"""Shared fixtures. Unit tests need nothing running; integration and e2e tests use the real
broker and emulator, which ``make test`` (``meshgate up``) starts before pytest runs."""
