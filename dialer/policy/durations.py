"""Human durations in config and campaign files: "90s", "10m", "2h", "1d", "1h30m", "1.5h"."""

from __future__ import annotations

import re
from datetime import timedelta

ACCEPTED = '"90s", "10m", "2h", "1d", "1h30m" or "1.5h"'
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[dhms]\s*)+$")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> timedelta:
    """Parse a duration with units; raise ValueError naming the accepted forms."""
    if not isinstance(text, str) or not _WHOLE.match(text.lower()):
        raise ValueError(f"{text!r} is not a duration (accepted: {ACCEPTED})")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text.lower()))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text parse_duration reads back as ``value`` (whole seconds)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in "dhms":
        size = int(_UNIT_SECONDS[unit])
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
