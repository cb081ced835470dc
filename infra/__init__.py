"""meshgate infrastructure: local cloud, packaging, deploy and the ``meshgate`` CLI."""
