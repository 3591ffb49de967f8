"""Splitting a call's requests into provider batches by the provider's request-count and size limits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..errors import ConfigError


def split(lines: Iterable[tuple[str, str]], max_requests: int,
          max_bytes: int) -> Iterator[tuple[list[str], list[str]]]:
    """(ids, JSON lines) per batch, from (id, line) pairs: at most max_requests lines and max_bytes bytes
    (newlines included) per batch."""
    group: list[str] = []
    texts: list[str] = []
    size = 0
    for item, line in lines:
        n = len(line.encode()) + 1
        if n > max_bytes:
            raise ConfigError(f"one request is {n:,} bytes, over the provider's batch limit of {max_bytes:,} bytes; "
                              "shorten the prompt or use mode='online'")
        if group and (len(group) >= max_requests or size + n > max_bytes):
            yield group, texts
            group, texts, size = [], [], 0
        group.append(item)
        texts.append(line)
        size += n
    if group:
        yield group, texts
