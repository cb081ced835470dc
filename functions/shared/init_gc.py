"""The cyclic garbage collector in a serving process: paused during a Lambda function's init
(its module imports and build), the init's objects frozen, and a larger young generation
while it serves (Lambda handlers and worker processes alike).

A cold start allocates a few hundred thousand long-lived objects (FastAPI, pydantic,
botocore, the app) and collects nothing worth having: left on, the collector runs its
generations over them again and again while they are being made (measured for the gateway:
about 58 ms of its cold start, a full collection 25 ms of it). So a handler module pauses it
before its first heavy import and, once built, moves everything it made into the permanent
generation (``gc.freeze``) before turning it back on: later collections, in warm invocations,
no longer walk the init objects either. The price is that the init's own cyclic garbage is
never freed; it is made once per process and small next to what it keeps (819 objects
found by a full collection after the gateway's init, of 113,000 it made).

A worker process freezes what its start made too (``functions.shared.worker_main``): under
load its full collections ran about once a second and walked every module, class and function
object each time (18-37 ms a walk of ~46,000 objects at 100 concurrent callers); frozen, a
full collection walks only what requests left behind.

While serving, the young generation is collected after ``SERVING_THRESHOLD[0]`` net
allocations instead of Python's 700: a request's objects are freed by reference counting as
it ends, but with 700 the collector ran ~130 times a second under load, found the in-flight
requests' objects alive, promoted them and walked them again in the older generations (CPU
in the collector over 10 s of load at 100 callers: ~500 ms with 700, ~120 with 5,000, ~55
with 20,000). Only cyclic garbage waits longer for it, a few thousand objects at most.
"""

from __future__ import annotations

import gc
from typing import Final

SERVING_THRESHOLD: Final = (20_000, 10, 10)


def pause_collection() -> None:
    """First thing in a handler module, before its heavy imports."""
    gc.disable()


def settle_for_serving() -> None:
    """Last thing before serving: what the init made is permanent, the young generation is
    the serving size, collection (re)starts."""
    gc.freeze()
    gc.set_threshold(*SERVING_THRESHOLD)
    gc.enable()
