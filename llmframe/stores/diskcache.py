"""The answer cache: diskcache on disk, read and written in bulk, never holding failures.

Maintenance (stats, pruning by model or age, the size limit) is here too; stores/manage.py's `cache_stats`
and `clear_cache` (and `llmframe cache stats|clear`) reach it through the store seam (stores/base.py).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..memo import files as memo_files
from .. import constants
from ..config import default_directory  # there: planning needs it too (media digests), and may not import stores
from ..durations import parse_duration
from ..errors import CacheDamaged, CacheError
from . import journal as journals
from .base import UNKNOWN, BaseStore, check_model, decode

__all__ = ["UNKNOWN", "Store", "open_store", "parse_duration", "default_directory", "resolve_directory", "existing_store",
           "reset_cache"]

# Values shorter than diskcache's file threshold sit in the row itself ("raw" mode), keyed by raw str keys.
_MODE_RAW = 1
# Pairs (key, value), so that dict() takes the rows as they come; a value kept in a file (another mode) reads as
# NULL here, which sends the chunk to diskcache's own get.
_BULK_GET = (
    f"SELECT key, CASE WHEN mode = {_MODE_RAW} THEN value END FROM Cache WHERE raw = 1 "
    "AND (expire_time IS NULL OR expire_time > ?) AND key IN ({slots})"
)

# The row diskcache's add() writes for a short str value: raw str key, no expiry, no tag, value inline; ?1 is the
# time, then each row's key and value. Many rows per statement: executemany steps once per row, and each step
# hands the GIL back and forth (with the loop busy in another thread, 100,000 rows took 166 s instead of 1.6 s).
_BULK_INSERT = (
    "INSERT OR IGNORE INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size, mode,"
    " filename, value) VALUES {rows}"
)
_INSERT_ROW = f"(?{{key}}, 1, ?1, NULL, ?1, 0, NULL, 0, {_MODE_RAW}, NULL, ?{{value}})"
_ROWS_PER_INSERT = 256  # 513 parameters: within SQLite's oldest limit (999)

_open: dict[str, Store] = {}
_open_lock = threading.Lock()

_DB_FILE = "cache.db"  # diskcache's database, whose presence means "a cache lives here"
_PRUNE_BATCH = 500  # keys deleted per transaction: short write locks, so running jobs barely wait
_DAMAGED_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB: the file itself is bad
_VALUE_DIRS = "[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]"  # where diskcache keeps values too long for the database
_VALUE_FILES = f"{_VALUE_DIRS}/*.val"




def _check_directory(path: str | os.PathLike) -> None:
    """CacheError when the cache directory is a file: SQLite's own error would name neither."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CacheError(f"the cache directory {path} is a file, not a directory: pass cache_dir= (or set "
                         f"{constants.CACHE_ENV_VAR} to) a directory, or run with cache=False")


def _cache_error(directory: str, exc: BaseException) -> CacheError:
    """A failure of SQLite or the file system as an error naming the cache's file and the fixes."""
    db = os.path.join(directory, _DB_FILE)
    code = getattr(exc, "sqlite_errorcode", None)
    damaged = code & 0xFF in _DAMAGED_CODES if code is not None else type(exc) is sqlite3.DatabaseError
    if damaged:
        return CacheDamaged(
            f"the cache file {db} is damaged ({exc}). Run without the cache (cache=False, or --cache off), move the "
            f"file aside (mv {db} {db}.damaged), or reset the cache, losing its answers: "
            f"llmframe cache clear --force --cache-dir {directory} (in Python: llmframe.clear_cache({directory!r}, force=True))"
        )
    return CacheError(
        f"cannot use the cache in {directory} ({type(exc).__name__}: {exc}): the directory must be writable and "
        f"have free space. Point cache_dir= (or {constants.CACHE_ENV_VAR}) at another directory, or run with cache=False"
    )


def _guarded(method):
    """A Store method whose SQLite and file-system errors are CacheErrors naming the file and the fixes."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise _cache_error(self.directory, exc) from exc

    return call


def open_store(directory: str | os.PathLike | None = None, *, size_limit: int | None = None) -> Store:
    """The store for a directory, opened once per process (diskcache is thread- and process-safe).

    With size_limit (bytes), the store's limit becomes that; without, it stays as it is.
    CacheError (CacheDamaged for a damaged database) when the directory cannot hold a cache.
    """
    path = str(Path(directory).expanduser() if directory is not None else default_directory())
    with _open_lock:
        store = _open.get(path)
        if store is None:
            store = _open[path] = Store(path, size_limit=size_limit)
        elif size_limit is not None and size_limit != store.size_limit:
            store.set_size_limit(size_limit)
        return store


class Store(BaseStore):
    """Cached answers by content key in a local diskcache; values are the compact JSON of a Response."""

    def __init__(self, directory: str, *, size_limit: int | None = None):
        import diskcache

        self.directory = self.location = directory
        self.state_dir = Path(directory)  # batch job state sits beside the answers
        _check_directory(directory)
        if size_limit is None and not os.path.exists(os.path.join(directory, _DB_FILE)):
            size_limit = constants.CACHE_SIZE_LIMIT  # a new cache, not diskcache's own 1 GiB default
        settings: dict[str, Any] = {} if size_limit is None else {"size_limit": size_limit}
        # Without a size_limit an existing cache keeps the one stored in it (by the last run that set one).
        try:
            self._cache = diskcache.Cache(
                directory,
                eviction_policy="least-recently-stored",  # reads stay read-only: no write per hit
                cull_limit=0,  # no size check on every write (it costs a third of a write); trim() after each run
                statistics=False,
                tag_index=False,
                # diskcache maps 64 MB of the file and caches 32 MB of pages per connection by default: memory
                # a million-row run shows as its own. A quarter of the pages reads and writes as fast here
                # (benchmarks/RESULTS.md), and so do bulk lookups without a map, which a file truncated
                # under the process would turn into SIGBUS; the OS caches the file anyway.
                sqlite_mmap_size=constants.CACHE_SQLITE_MMAP_BYTES,
                sqlite_cache_size=constants.CACHE_SQLITE_PAGES,
                **settings,
            )
        except (sqlite3.Error, OSError) as exc:
            raise _cache_error(directory, exc) from exc
        self._journals = Path(directory) / journals.DIRECTORY
        self.recover()

    @_guarded
    def recover(self) -> int:
        """Move the journals of processes killed mid-run into the cache; how many answers they held."""
        return journals.replay(self._journals, self.put)

    def journal(self) -> journals.Journal | None:
        """A journal for one run's answers, after replaying those of processes that are gone (None: not here)."""
        if not journals.SUPPORTED:
            return None
        self.recover()
        return journals.Journal(self._journals)

    @property
    def size_limit(self) -> int:
        """Bytes on disk beyond which the least recently stored answers are evicted."""
        return int(self._cache.size_limit)

    @_guarded
    def set_size_limit(self, size_limit: int) -> None:
        """Change the limit, in this process and in the cache's own settings (seen by later openers).

        Eviction happens in trim(), which every run calls when it ends.
        """
        self._cache.reset("size_limit", int(size_limit))

    @_guarded
    def trim(self) -> int:
        """Evict the least recently stored answers while the cache is over its size limit; how many went."""
        evicted = int(self._cache.cull())
        if evicted:
            memo_files.invalidate(self.directory)  # the run memo is a copy of answers: never the only one
        return evicted

    @_guarded
    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Values for keys (None where absent): one SQL query for the whole chunk.

        diskcache has no bulk read, and one get per key is most of a cached re-run's time, so this
        reads its table directly (its schema has been stable since 2017); anything unexpected falls
        back to diskcache's own get.
        """
        if not keys:
            return []
        try:
            found = dict(self._cache._sql(_BULK_GET.format(slots=",".join("?" * len(keys))),
                                          (time.time(), *keys)).fetchall())
        except (AttributeError, sqlite3.Error):
            found = None
        if found is None or None in found.values():
            get = self._cache.get  # large values live in files: let diskcache read them
            with self._cache.transact():
                return [get(key) for key in keys]
        return list(map(found.get, keys))

    @_guarded
    def set_many(self, items: Sequence[tuple[str, str]], *, overwrite: bool = False) -> int:
        """Store answers in one transaction (one commit per chunk, not per row).

        Without overwrite, a key another process stored meanwhile is kept as is; returns how many
        keys were already there, i.e. requests that were answered twice. Small values (all but the
        longest answers) go in with INSERT OR IGNOREs of a few hundred rows each, written exactly as diskcache
        writes them, so diskcache reads them back; its own add() costs ten times more per row.
        """
        if not items:
            return 0
        if overwrite:
            memo_files.invalidate(self.directory)  # answers replaced: a memo may hold the old ones
            with self._cache.transact():
                for key, value in items:
                    self._cache.set(key, value)
            return 0
        limit = getattr(self._cache, "disk_min_file_size", 2**15)
        small = [(key, value) for key, value in items if len(value) < limit]
        large = [(key, value) for key, value in items if len(value) >= limit]
        with self._cache.transact():
            present = sum(not self._cache.add(key, value) for key, value in large)
            if small:
                present += len(small) - self._insert_small(small)
        return present

    def _insert_small(self, items: list[tuple[str, str]]) -> int:
        """Insert raw-mode rows for keys not there yet, a few hundred per statement; how many were inserted."""
        now, inserted = time.time(), 0
        for start in range(0, len(items), _ROWS_PER_INSERT):
            chunk = items[start : start + _ROWS_PER_INSERT]
            try:
                inserted += self._cache._con.execute(_insert_statement(len(chunk)),
                                                     [now, *itertools.chain.from_iterable(chunk)]).rowcount
            except (AttributeError, sqlite3.Error):  # diskcache's own add() for the rest, as slow as it is
                return inserted + sum(self._cache.add(key, value) for key, value in items[start:])
        return inserted

    def _entries(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) of every entry, another program's too, streamed: diskcache iterates keys 100 rows per query."""
        get = self._cache.get
        missing = object()
        for key in self._cache:
            value = get(key, missing)
            if value is not missing:  # deleted by another process since the key was read
                yield key, value

    def entries(self) -> Iterator[tuple[str, str]]:
        """(key, value) of every answer llmframe could have written (str keys; str or bytes values), streamed."""
        try:
            self.recover()  # a process killed since the cache was opened: its answers are copied too
            for key, value in self._entries():
                if isinstance(key, str) and isinstance(value, (str, bytes)):
                    yield key, value
        except (sqlite3.Error, OSError) as exc:
            raise _cache_error(self.directory, exc) from exc

    @_guarded
    def stats(self) -> dict:
        """Entries, bytes on disk, the size limit, and per model the count and oldest/newest answer.

        Times are Unix seconds. Values llmframe cannot read are counted under "unknown", not in models.
        """
        self.recover()  # a process killed since the cache was opened: its answers count
        models: dict[str, dict] = {}
        unknown = 0
        for _key, value in self._entries():
            meta = decode(value)
            if meta is None:
                unknown += 1
                continue
            model, created = meta
            entry = models.setdefault(model, {"entries": 0, "oldest": created, "newest": created})
            entry["entries"] += 1
            entry["oldest"], entry["newest"] = min(entry["oldest"], created), max(entry["newest"], created)
        times = [m["oldest"] for m in models.values()] + [m["newest"] for m in models.values()]
        return {
            "store": self.directory,
            "directory": self.directory,
            "entries": sum(m["entries"] for m in models.values()) + unknown,
            "size_bytes": int(self._cache.volume()),
            "size_limit_bytes": self.size_limit,
            "oldest": min(times, default=None),
            "newest": max(times, default=None),
            "models": dict(sorted(models.items())),
            "unknown": unknown,
        }

    @_guarded
    def prune(self, *, older_than: float | None = None, model: str | None = None) -> int:
        """Delete the answers stored more than older_than seconds ago and/or by model; how many went.

        Both filters must hold (AND). With neither, everything goes, unreadable values included.
        With a filter, unreadable values stay: their model and age are unknown, and only a full
        clear removes them. Deletion runs in short transactions of a few hundred keys; each key is
        checked again inside its transaction, so an answer another process has just rewritten is kept.
        """
        memo_files.invalidate(self.directory)  # the run memo is a copy of answers: never the only one
        self.recover()  # first: a killed process's answers replayed later would escape the prune
        if older_than is None and model is None:
            return int(self._cache.clear())
        check_model(model)
        cutoff = None if older_than is None else time.time() - parse_duration(older_than)

        def doomed(value: Any) -> bool:
            meta = decode(value)
            if meta is None:
                return False
            return (model is None or meta[0] == model) and (cutoff is None or meta[1] < cutoff)

        removed = 0
        keys = (key for key, value in self._entries() if doomed(value))
        while batch := list(itertools.islice(keys, _PRUNE_BATCH)):
            removed += self._delete_if(batch, doomed)
        return removed

    def _delete_if(self, keys: list[Any], doomed: Callable[[Any], bool]) -> int:
        cache = self._cache
        missing = object()
        removed = 0
        with cache.transact():
            for key in keys:
                value = cache.get(key, missing)
                if value is not missing and doomed(value) and cache.delete(key):
                    removed += 1
        return removed

    @_guarded
    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        """Close the underlying connections (they reopen on next use)."""
        self._cache.close()


@functools.lru_cache(maxsize=64)
def _insert_statement(rows: int) -> str:
    """The INSERT of `rows` rows: parameter 1 is the time, then each row's key and value."""
    return _BULK_INSERT.format(rows=",".join(_INSERT_ROW.format(key=2 * i + 2, value=2 * i + 3) for i in range(rows)))


def resolve_directory(cache_dir: str | os.PathLike | None = None) -> Path:
    """cache_dir, else the configured one (llmframe.configure), else the default directory."""
    if cache_dir is None:
        from ..config import settings

        cache_dir = settings().cache_dir
    return Path(cache_dir).expanduser() if cache_dir is not None else default_directory()


def existing_store(cache_dir: str | os.PathLike | None) -> tuple[Path, Store | None]:
    """The store in a directory, or None where no cache exists (so a typo creates nothing)."""
    path = resolve_directory(cache_dir)
    _check_directory(path)
    if not (path / _DB_FILE).exists():
        return path, None
    return path, open_store(path)


def reset_cache(cache_dir: str | os.PathLike | None = None) -> None:
    """Delete a cache's database and answer files, readable or not; its batch job state is kept."""
    path = resolve_directory(cache_dir)
    _check_directory(path)
    with _open_lock:
        store = _open.pop(str(path), None)
    if store is not None:
        with contextlib.suppress(Exception):  # a damaged file may fail to close: it is deleted next anyway
            store.close()
    memo_files.invalidate(path)
    journals.remove(path / journals.DIRECTORY)
    for name in (_DB_FILE, f"{_DB_FILE}-wal", f"{_DB_FILE}-shm"):
        (path / name).unlink(missing_ok=True)
    for value in path.glob(_VALUE_FILES):
        value.unlink(missing_ok=True)
    for folder in [*path.glob(_VALUE_DIRS), *path.glob(_VALUE_DIRS.partition("/")[0])]:  # inner ones first
        with contextlib.suppress(OSError):  # not empty: something else lives there
            folder.rmdir()
