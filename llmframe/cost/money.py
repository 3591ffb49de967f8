"""Dollars as people read them: $3.45, $0.0123, $0.00000345; never 3.45e-06."""

from __future__ import annotations

import math

_SIGNIFICANT = 3  # digits shown of an amount under a dollar


def dollars(value: float | None) -> str:
    """A USD amount in plain digits: cents from a dollar up, three significant digits below; None as unknown."""
    if value is None or not math.isfinite(value):
        return "unknown"
    if value == 0:
        return "$0"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if value >= 1:
        return f"{sign}${value:,.2f}"
    places = max(2, _SIGNIFICANT - 1 - math.floor(math.log10(value)))
    digits = f"{value:.{places}f}".rstrip("0")  # $0.50, not $0.500: the zeros carry no precision
    whole, _, cents = digits.partition(".")
    return f"{sign}${whole}.{cents.ljust(2, '0')}"
