"""Bytecode for the function zips.

Lambda unpacks a zip into a read-only ``/var/task``: a module whose ``.pyc`` is not in the zip
is compiled from source at every cold start, and the result cannot be cached. So each ``.py``
in a zip gets its ``__pycache__/<name>.<cache tag>.pyc`` beside it, hash-based and unchecked
(PEP 552): no timestamp in it (the zips' entries carry a fixed one, which would invalidate a
timestamp-based ``.pyc``, and the bytes stay reproducible), and no source read to validate it
at import. Only the interpreter that runs the build can compile, so this is done when it is
the functions' Python version (``Settings.lambda_python``); otherwise the zip has sources
only, as before. Pure but for ``compile``.
"""

from __future__ import annotations

import importlib.util
import marshal
import sys
from pathlib import PurePosixPath

_UNCHECKED_HASH_FLAGS = (0b01).to_bytes(4, "little")  # hash-based, not checked


def builds_for(python_version: str) -> bool:
    """Whether this interpreter can write ``.pyc`` files that ``python_version`` loads."""
    return python_version == f"{sys.version_info.major}.{sys.version_info.minor}"


def pyc_name(source_name: str) -> str:
    """``a/b.py`` -> ``a/__pycache__/b.<cache tag>.pyc`` (where the import system looks)."""
    path = PurePosixPath(source_name)
    return str(path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.pyc")


def compiled(source: bytes, name: str) -> bytes | None:
    """The unchecked hash-based ``.pyc`` of ``source`` (None if it does not compile here: a
    vendored file for another Python version, which then stays source only)."""
    try:
        code = compile(source, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    return (importlib.util.MAGIC_NUMBER + _UNCHECKED_HASH_FLAGS
            + importlib.util.source_hash(source) + marshal.dumps(code))
