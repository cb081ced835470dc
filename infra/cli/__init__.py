"""The ``meshgate`` command: its entry point (main) and one module per command group. Nothing
outside this package imports it; how a command talks to a person is ``infra.tui``."""
