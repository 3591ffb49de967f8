"""Durations written as text: "20ms", "1.5s", "6m0s" (OpenAI's reset headers), "30d", "2w" (cache pruning)."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d|w)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def duration_seconds(text: str) -> float | None:
    """Seconds in a bare number or a run of number+unit parts; None if text is neither."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    compact = text.replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        return None
    return sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts)
