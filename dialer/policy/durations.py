"""Human durations in config and campaign files: "90s", "10m", "2h", "1d", "1h30m", "1.5h".

Every part needs a unit (a bare "5" is refused: seconds or minutes?); parts add up, in any
order; units are d, h, m and s, case-insensitive; spaces between parts are allowed.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["ACCEPTED", "DURATION_ACCEPTED", "format_duration", "parse_duration"]

ACCEPTED = '"90s", "10m", "2h", "1d", "1h30m" or "1.5h"'
#: the hint of what a duration field accepts, for config and campaign messages alike
DURATION_ACCEPTED = f"a duration such as {ACCEPTED}"
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_WHOLE = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*[dhms]\s*)+")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
# timedelta's own limit is 999999999 days; far beyond any retry, window or poll interval.
_LONGEST = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """Parse a duration with units; raise ValueError naming the accepted forms.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    if not isinstance(text, str) or not _WHOLE.fullmatch(text.lower()):
        raise ValueError(f"{text!r} is not a duration (accepted: {ACCEPTED})")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text.lower()))
    if seconds > _LONGEST.total_seconds():
        raise ValueError(f"{text!r} is longer than 100 years (accepted: {ACCEPTED})")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text parse_duration reads back as ``value`` (whole seconds).

    >>> format_duration(timedelta(minutes=90))
    '1h30m'
    """
    seconds = int(value.total_seconds())
    if seconds < 0:
        raise ValueError("durations are never negative")
    if seconds == 0:
        return "0s"
    parts = []
    for unit in "dhms":
        size = int(_UNIT_SECONDS[unit])
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
