"""Run the ``orders`` service as a long-lived worker: ``python -m functions.orders.worker``.

Its handlers call other services (``orders.quote`` asks ``inventory.stock``), so the worker
has a mesh client whose replies arrive on ``MESH_REPLY_TOPIC`` (``mesh.replies``).
"""

from __future__ import annotations

from functions.orders.service import orders
from functions.shared.worker_main import main

if __name__ == "__main__":
    main(orders, nested_calls=True)
