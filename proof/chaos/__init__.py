"""Chaos scenarios on the real broker and emulator: ``python -m proof.chaos [--fast]``.

Each scenario runs a bounded load (count and time, 127.0.0.1 only) while it injects one
fault, then counts what the caller saw against what the service applied (``accounting``).
"""
