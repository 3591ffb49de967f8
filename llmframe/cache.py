"""The answer cache: diskcache on disk, read and written in bulk, never holding failures."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from . import constants

_open: dict[str, Store] = {}
_open_lock = threading.Lock()


def default_directory() -> Path:
    """LLMFRAME_CACHE_DIR if set, else the user's cache directory (e.g. ~/.cache/llmframe)."""
    configured = os.environ.get(constants.CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(constants.CACHE_APP_NAME, appauthor=False))


def open_store(directory: str | os.PathLike | None = None) -> Store:
    """The store for a directory, opened once per process (diskcache is thread- and process-safe)."""
    path = str(Path(directory).expanduser() if directory is not None else default_directory())
    with _open_lock:
        store = _open.get(path)
        if store is None:
            store = _open[path] = Store(path)
        return store


class Store:
    """Cached answers by content key; values are the compact JSON of a Response."""

    def __init__(self, directory: str):
        import diskcache

        self.directory = directory
        self._cache = diskcache.Cache(
            directory,
            size_limit=constants.CACHE_SIZE_LIMIT,
            eviction_policy="least-recently-stored",  # reads stay read-only: no write per hit
            statistics=False,
            tag_index=False,
        )

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Values for keys (None where absent), read in one transaction."""
        get = self._cache.get
        with self._cache.transact():
            return [get(key) for key in keys]

    def set_many(self, items: Sequence[tuple[str, str]], *, overwrite: bool = False) -> int:
        """Store answers in one transaction (one commit per chunk, not per row).

        Without overwrite, a key another process stored meanwhile is kept as is; returns how many
        keys were already there, i.e. requests that were answered twice.
        """
        if not items:
            return 0
        if overwrite:
            with self._cache.transact():
                for key, value in items:
                    self._cache.set(key, value)
            return 0
        add = self._cache.add
        with self._cache.transact():
            return sum(not add(key, value) for key, value in items)

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        """Close the underlying connections (they reopen on next use)."""
        self._cache.close()
