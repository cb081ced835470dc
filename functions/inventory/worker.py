"""Run the ``inventory`` service as a long-lived worker:
``python -m functions.inventory.worker``."""

from __future__ import annotations

from functions.inventory.service import inventory
from functions.shared.worker_main import main

if __name__ == "__main__":
    main(inventory)
