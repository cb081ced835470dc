"""``ce_time`` on the wire: RFC 3339 in one fixed-width spelling, ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

One spelling per instant (UTC, ``Z``, exactly three fraction digits, no leap second), so the
text a signature covers is decided by the instant: ``format_ms(parse_ms(text)) == text`` for
every text ``parse_ms`` accepts. Both directions slice the fixed positions (no general datetime
parsing per message); the text up to the second goes through a small cache (the messages of
one second share it). Pure; ``parse_ms`` raises only ``ValueError``.
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
_SECOND: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")


def format_ms(ms: int) -> str:
    """``ms`` (Unix epoch milliseconds) as the wire's RFC 3339 text."""
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"{ms} ms is outside years 0001-9999")
    seconds, millis = divmod(ms, 1000)
    return f"{_second_text(seconds)}.{millis:03d}Z"


def parse_ms(text: str) -> int:
    """The Unix epoch milliseconds of a wire ``ce_time``; ``ValueError`` for any other text."""
    millis = text[20:23]
    if (len(text) != LENGTH or text[19] != "." or text[23] != "Z" or not millis.isascii()
            or not millis.isdigit()):
        raise ValueError(f"must read YYYY-MM-DDTHH:MM:SS.mmmZ (RFC 3339, UTC), got {text[:40]!r}")
    return _second_ms(text[:19]) + int(millis)


# Messages sent or read within the same second share everything but the milliseconds: both
# directions cache the second's text (valid texts only: a refusal raises and is not cached).
@lru_cache(maxsize=1024)
def _second_text(seconds: int) -> str:
    days, of_day = divmod(seconds, 86_400)
    minutes, second = divmod(of_day, 60)
    hour, minute = divmod(minutes, 60)
    day = date.fromordinal(days + _EPOCH_ORDINAL).isoformat()
    return f"{day}T{hour:02d}:{minute:02d}:{second:02d}"


@lru_cache(maxsize=1024)
def _second_ms(text: str) -> int:
    """Epoch ms of ``YYYY-MM-DDTHH:MM:SS`` (UTC); ``ValueError`` unless exactly that."""
    if not _SECOND.fullmatch(text):
        raise ValueError(f"must read YYYY-MM-DDTHH:MM:SS.mmmZ (RFC 3339, UTC), got {text!r}")
    try:
        days = date.fromisoformat(text[:10]).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise ValueError(f"{text[:10]!r} is not a calendar date") from None
    seconds = int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
    return (days * 86_400 + seconds) * 1000
