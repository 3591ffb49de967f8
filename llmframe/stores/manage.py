"""Which store a run or a command uses, and what users do with stores: stats, clear (prune), copy.

A store is named by a directory (diskcache) or a postgresql:// URL. Unnamed, it is the configured
cache_dir, else LLMFRAME_CACHE_URL, else LLMFRAME_CACHE_DIR or the user cache directory.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Callable
from pathlib import Path

from .. import constants
from ..cacheurl import CacheURL, is_url
from ..durations import parse_duration
from ..errors import CacheDamaged, ConfigError
from .base import BaseStore, check_model
from .diskcache import existing_store, open_store, reset_cache, resolve_directory

def locate(target: str | os.PathLike | CacheURL | None = None) -> CacheURL | Path:
    """The store a name means: a URL stays a URL; a directory (given or configured) is diskcache; else the env."""
    if isinstance(target, CacheURL):
        return target
    if is_url(target):
        return CacheURL(str(target))
    if target is None:
        from ..config import settings

        if settings().cache_dir is None and os.environ.get(constants.CACHE_URL_ENV_VAR):
            return CacheURL(os.environ[constants.CACHE_URL_ENV_VAR])
    return resolve_directory(target)


def open_url(url: CacheURL) -> BaseStore:
    """The PostgreSQL store at url (psycopg is imported only here), checked: CacheError before any request."""
    from .postgresql import open_postgres

    return open_postgres(url)


def open_cache(cache: bool | str | CacheURL, cache_dir: str | None, size_limit: int | None) -> BaseStore | None:
    """A run's store: None with cache=False; cache=URL, else cache_dir, else LLMFRAME_CACHE_URL, else diskcache."""
    if cache is False:
        return None
    where = locate(cache if isinstance(cache, CacheURL) else cache_dir)
    if isinstance(where, CacheURL):
        return open_url(where)
    return open_store(where, size_limit=size_limit)


def _existing(target) -> tuple[str, BaseStore | None]:
    """(where, its store), or None where no diskcache exists there (so a typo creates nothing)."""
    where = locate(target)
    if isinstance(where, CacheURL):
        return where.shown, open_url(where)
    path, store = existing_store(where)
    return str(path), store


def cache_stats(cache_dir: str | os.PathLike | None = None) -> dict:
    """What the cache holds: entries, bytes, size limit, per model count and oldest/newest.

    cache_dir: a directory or a postgresql:// URL (default: the one runs use). A diskcache is read
    entry by entry, streamed (about 15 s per million answers); PostgreSQL counts on the server.
    """
    where, store = _existing(cache_dir)
    if store is not None:
        return store.stats()
    from ..config import settings

    return {"store": where, "directory": where, "entries": 0, "size_bytes": 0,
            "size_limit_bytes": settings().cache_size_limit, "oldest": None, "newest": None, "models": {},
            "unknown": 0}


def clear_cache(cache_dir: str | os.PathLike | None = None, *, older_than: float | str | _dt.timedelta | None = None,
                model: str | None = None, force: bool = False) -> int:
    """Delete cached answers; returns how many were removed.

    cache_dir: a directory or a postgresql:// URL (default: the one runs use).
    older_than: only answers stored longer ago than this (seconds, a timedelta, or "30d", "12h", ...).
    model: only answers of this model string, as passed to generate (e.g. "openai:gpt-4o-mini").
    Both given: both must hold. Neither: the whole cache is cleared.
    force: a cache whose database is damaged (CacheDamaged) is reset instead: its files are deleted,
    and 0 is returned (what it held cannot be counted). Only for a whole clear.
    """
    seconds = None if older_than is None else parse_duration(older_than)
    check_model(model)
    if not isinstance(force, bool):
        raise ConfigError(f"force must be True or False, got {force!r}")
    if force and (older_than is not None or model is not None):
        raise ConfigError("force resets the whole cache, so it takes no older_than or model filter")
    try:
        _where, store = _existing(cache_dir)
        if store is None:
            return 0
        return store.prune(older_than=seconds, model=model)
    except CacheDamaged:
        if not force:
            raise
        reset_cache(cache_dir)
        return 0


def copy_cache(source: str | os.PathLike | CacheURL, destination: str | os.PathLike | CacheURL, *,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Copy every answer of source into destination, streamed; keys already there are kept as they are.

    Idempotent and resumable: a second run (or one after an interruption) writes only what is
    missing. Returns {"copied": n, "present": m}; progress(copied, present) is called after each chunk.
    """
    src, dst = locate(source), locate(destination)
    if src == dst:
        raise ConfigError(f"source and destination are the same store ({src}): name two different ones")
    _where, reader = _existing(src)
    if reader is None:
        raise ConfigError(f"there is no cache in {src}: name a directory that holds one, or a postgresql:// URL")
    writer = open_url(dst) if isinstance(dst, CacheURL) else open_store(dst)
    copied = present = 0
    entries = reader.entries()
    while chunk := list(itertools.islice(entries, constants.PG_COPY_ROWS)):
        already = writer.set_many(chunk)
        copied, present = copied + len(chunk) - already, present + already
        if progress is not None:
            progress(copied, present)
    return {"copied": copied, "present": present}
