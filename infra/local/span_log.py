"""The local collector's files: JSON lines, appended, rotated at a size bound.

``JsonLines(path, max_bytes)`` appends rows (one JSON object a line, written whole under a
lock, so concurrent exports never interleave). When the file would pass ``max_bytes`` it
becomes ``<path>.1`` (replacing the previous one) and a new file starts: at most about twice
``max_bytes`` on disk. ``read_rows(path)`` yields the rows of ``<path>.1`` then ``<path>``,
skipping a torn or foreign line rather than failing.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

MAX_BYTES: Final = 50 * 1024 * 1024


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


class JsonLines:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def append(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append ``rows``; returns how many were written."""
        data = "".join(json.dumps(row, separators=(",", ":"), sort_keys=True) + "\n"
                       for row in rows).encode()
        if not data:
            return 0
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.max_bytes:
                os.replace(self.path, rotated(self.path))
            with self.path.open("ab") as out:
                out.write(data)
        return data.count(b"\n")


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Every row of the rotated file, then of the current one (oldest first)."""
    for source in (rotated(path), path):
        try:
            handle = source.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    yield row
