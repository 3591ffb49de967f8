"""Durations written as text: "20ms", "1.5s", "6m0s" (OpenAI's reset headers), "30d", "2w" (cache pruning)."""

from __future__ import annotations

import datetime as _dt
import math
import re

from .errors import ConfigError

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d|w)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def duration_seconds(text: str) -> float | None:
    """Seconds in a bare number or a run of number+unit parts; None if text is neither, or not finite."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:  # "inf" and "nan" parse as floats: no wait or age is that
        return seconds if math.isfinite(seconds) else None
    compact = text.replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        return None
    seconds = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts)
    return seconds if math.isfinite(seconds) else None  # hundreds of digits overflow to inf


def parse_duration(value: float | int | str | _dt.timedelta) -> float:
    """Seconds from a number of seconds, a timedelta, or a string like "30d", "12h", "90m", "45s", "2w"."""
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = duration_seconds(value)
    else:
        seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(
            f"older_than must be a duration: seconds (a number >= 0), a datetime.timedelta, or a string "
            f"like '30d', '12h', '90m', '45s' or '2w'; got {value!r}"
        )
    return seconds
