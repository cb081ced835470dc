"""The bench's echo Lambda: the baseline of the end-to-end benchmark (``bench.e2e_echo``).

It answers every request with the request's body, importing nothing but the standard
library, so the HTTP API and the emulator's Lambda runtime are all that its latency holds.
"""
