"""How the commands print sizes and times."""

from __future__ import annotations


def human_bytes(n: int) -> str:
    """A size in bytes as people read it: 512 B, 1.5 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def iso(timestamp: float | None) -> str:
    """A time stamp as local ISO time to the second; "-" for none."""
    from datetime import datetime

    return "-" if timestamp is None else datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
