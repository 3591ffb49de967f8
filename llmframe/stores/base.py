"""The store seam: what the engine, the faces and the CLI ask of an answer store, whichever it is.

Values are the compact JSON texts of Response.to_cache, keyed by content key, and for embeddings binary
values (bytes, plan.vector_value); both stores hold them as they are (PostgreSQL's text column holds a binary
value as "~" and its base64), so `llmframe cache copy` moves answers between them unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..plan import vector_value

UNKNOWN = "unknown"  # stats' name for values llmframe cannot read (another program's, an older format)


class BaseStore:
    """An answer store: bulk get, bulk put-if-absent, stats, prune (clear), and a stream of its entries."""

    location: str  # where it is, as messages show it (a directory, or a URL without its password)
    state_dir: Path  # where native batch job state lives: always a local directory (it is per user)

    def get_many(self, keys: Sequence[str]) -> list[str | bytes | None]:
        """Values for keys, in order (None where absent), read in bulk."""
        raise NotImplementedError

    def set_many(self, items: Sequence[tuple[str, str]], *, overwrite: bool = False) -> int:
        """Store (key, value) pairs; without overwrite a key already there is kept. Returns how many were."""
        raise NotImplementedError

    def put(self, items: Sequence[tuple[str, str | bytes, bool]]) -> int:
        """Store (key, value, overwrite) triples: the others first, then the refreshes, which replace them.

        Returns how many of the others were there already (set_many's count).
        """
        present = 0
        for overwrite in (False, True):
            chosen = [(key, value) for key, value, replace in items if replace is overwrite]
            if chosen:
                present += self.set_many(chosen, overwrite=overwrite)
        return present

    def stats(self) -> dict:
        """Entries, bytes, size limit (None: none), and per model the count and oldest/newest answer."""
        raise NotImplementedError

    def prune(self, *, older_than: float | None = None, model: str | None = None) -> int:
        """Delete the answers older than older_than seconds and/or of model (neither: all); how many went."""
        raise NotImplementedError

    def entries(self) -> Iterator[tuple[str, str]]:
        """Every (key, value), streamed (for copying between stores)."""
        raise NotImplementedError

    def journal(self):
        """A journal for one run's answers (stores/journal.py), or None: answers are safe once committed."""
        return None

    def trim(self) -> int:
        """Evict answers beyond the store's size limit, after a run; a store without one evicts nothing."""
        return 0

    def close(self) -> None:
        """Release connections (they reopen on next use where the store can)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


def decode(value: Any) -> tuple[str, float] | None:
    """(model, created) of a value written by Response.to_cache (or plan.vector_value), or None if it is not one."""
    if isinstance(value, bytes):
        return vector_value.meta(value)
    if not isinstance(value, str):
        return None
    try:
        row = json.loads(value)
    except ValueError:
        return None
    if not isinstance(row, list) or len(row) < 6:
        return None
    model, created = row[4], row[5]
    if not isinstance(model, str) or isinstance(created, bool) or not isinstance(created, (int, float)):
        return None
    return model, float(created)


def check_model(model: str | None) -> None:
    """ConfigError unless model is None or a model string."""
    if model is not None and (not isinstance(model, str) or not model):
        raise ConfigError(f"model must be a non-empty model string like 'openai:gpt-4o-mini', got {model!r}")
