"""The ``meshgate`` command: its entry point (main), one module per command group, and how it talks
to a person (tui)."""
