"""``ce_time`` on the wire: RFC 3339 in one fixed-width spelling, ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

One spelling per instant (UTC, ``Z``, exactly three fraction digits, no leap second), so the
text a signature covers is decided by the instant: ``format_ms(parse_ms(text)) == text`` for
every text ``parse_ms`` accepts. Both directions slice the fixed positions (no general datetime
parsing per message); the date part goes through a small cache (messages of a run share a few
days). Pure; ``parse_ms`` raises only ``ValueError``.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from typing import Final

LENGTH: Final = 24  # len("2026-01-02T03:04:05.678Z")
DAY_MS: Final = 86_400_000
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
MIN_MS: Final = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * DAY_MS  # 0001-01-01T00:00:00.000Z
MAX_MS: Final = (date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * DAY_MS - 1
# ASCII digits only (str.isdigit accepts other scripts' digits, int() accepts '+', '_', ' ').
_SHAPE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z")


def format_ms(ms: int) -> str:
    """``ms`` (Unix epoch milliseconds) as the wire's RFC 3339 text."""
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"{ms} ms is outside years 0001-9999")
    days, of_day = divmod(ms, DAY_MS)
    seconds, millis = divmod(of_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_date_text(days)}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def parse_ms(text: str) -> int:
    """The Unix epoch milliseconds of a wire ``ce_time``; ``ValueError`` for any other text."""
    if len(text) != LENGTH or not _SHAPE.fullmatch(text):
        raise ValueError(f"must read YYYY-MM-DDTHH:MM:SS.mmmZ (RFC 3339, UTC), got {text[:40]!r}")
    seconds = int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
    return _days(text[:10]) * DAY_MS + seconds * 1000 + int(text[20:23])


@lru_cache(maxsize=256)
def _date_text(days: int) -> str:
    return date.fromordinal(days + _EPOCH_ORDINAL).isoformat()


@lru_cache(maxsize=256)
def _days(text: str) -> int:
    """Days since 1970-01-01 of ``YYYY-MM-DD``; ``ValueError`` for a date that does not exist."""
    try:
        return date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise ValueError(f"{text!r} is not a calendar date") from None
