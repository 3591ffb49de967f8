"""The run memo's files: Arrow IPC files in `<cache directory>/memo/`, each's metadata in its schema.

One file holds one result of a call (the new columns, in row order) and, in its schema's metadata, the chunk
fingerprints and what the report needs of each chunk. A call may have several, one per first chunk
(`<call>.<tag>.arrow`): the chunks of one file that `llmframe run` sends through generate one after another, or two
frames with the same columns, each keep theirs, and a call reads its chunks from any of them. Each is written to a
temporary name and renamed, so a reader sees a whole old file or a whole new one; read memory-mapped, so a hit
copies nothing. Only local (diskcache) stores have one: a shared PostgreSQL store is cleared and pruned from other
machines, which local files would not hear of. The directory goes whenever the per-row cache loses answers (clear,
prune, eviction, reset: `invalidate`), and its `.epoch` token first, so a run that read an older memo never writes
its answers back, and a file that could not be deleted is never read again (each file records the token it was
written under).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .. import constants

_META = b"llmframe.memo"
_EPOCH = ".epoch"


@dataclass
class Stored:
    """One call's memo as read: its metadata, and its table (memory-mapped, read on first use)."""

    path: Path
    meta: dict
    epoch: str | None
    reader: pa.ipc.RecordBatchFileReader
    _table: pa.Table | None = None

    @property
    def tag(self) -> str:
        """Which of its call's memos this is ("" for the one without a tag)."""
        return self.path.stem.partition(".")[2]

    @property
    def table(self) -> pa.Table:
        """The stored columns, memory-mapped: the hit's columns are slices of the file's pages."""
        if self._table is None:
            self._table = self.reader.read_all()
        return self._table

    def index(self) -> dict[str, int]:
        """Chunk fingerprint -> its chunk's position in the table, for the chunks whose answers are all in."""
        return {fp: k for k, fp in enumerate(self.meta["chunks"]) if fp is not None}


def directory(where: Path) -> Path:
    """The memo directory of a cache directory."""
    return where / constants.MEMO_DIRECTORY


def epoch(memo_dir: Path) -> str | None:
    """The identity of the directory's current life (a random token in its .epoch file); None where it has none."""
    try:
        return (memo_dir / _EPOCH).read_text() or None
    except OSError:
        return None


def load(memo_dir: Path, call: str) -> Stored | None:
    """The call's most recent memo, or None where there is none."""
    found = load_all(memo_dir, call)
    return found[0] if found else None


def load_all(memo_dir: Path, call: str) -> list[Stored]:
    """The call's memos, the most recently used first; those that cannot be read are left out (the per-row path
    answers their rows instead)."""
    now = epoch(memo_dir)
    if now is None:
        return []
    paths = []
    for path in [memo_dir / f"{call}.arrow", *memo_dir.glob(f"{call}.*.arrow")]:
        with _quiet():
            paths.append((path.stat().st_mtime, path))
    found = (_open(path, now) for _, path in sorted(paths, reverse=True))
    return [stored for stored in found if stored is not None]


def _open(path: Path, now: str) -> Stored | None:
    """One memo file, or None where it cannot be read or belongs to another format or life.

    Files opened before are reused (opening one costs about a millisecond, half of a small hit): a memo file is
    never changed in place, only replaced (a new inode; the old one cannot be reused while its map is held here).
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    seen = (info.st_dev, info.st_ino, info.st_size)
    with _opened_lock:
        kept = _opened.pop(str(path), None)
        if kept is not None and kept[0] == seen:
            _opened[str(path)] = kept  # the most recently used last
            return kept[1] if kept[1].epoch == now else None
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))  # the map lives as long as the columns read from it
        meta = json.loads(reader.schema.metadata[_META])
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        return None
    if meta.get("version") != constants.MEMO_VERSION or meta.get("epoch") != now:
        return None  # another format, or a file an invalidation could not delete (it belongs to an older life)
    stored = Stored(path, meta, meta["epoch"], reader)
    with _opened_lock:
        _opened[str(path)] = (seen, stored)
        while len(_opened) > constants.MEMO_OPEN_FILES:
            del _opened[next(iter(_opened))]
    return stored


_opened: dict[str, tuple[tuple, Stored]] = {}  # path -> (device, inode, size; the file as opened), least recent first
_opened_lock = threading.Lock()


def save(memo_dir: Path, call: str, table: pa.Table, meta: dict, read_epoch: str | None, tag: str = "") -> bool:
    """Write one of the call's memos (tag: which, replacing the one of that tag) unless the directory was
    invalidated since the run read it; then keep the bound."""
    memo_dir.mkdir(parents=True, exist_ok=True)
    marker = memo_dir / _EPOCH
    if read_epoch is not None and epoch(memo_dir) != read_epoch:
        return False  # cleared meanwhile: what this run took from the old memo may be gone from the cache
    if not marker.exists():
        try:
            with open(marker, "x") as out:  # exclusive: a concurrent first writer's token is kept
                out.write(uuid.uuid4().hex)
        except FileExistsError:
            pass
    stamp = {"version": constants.MEMO_VERSION, "epoch": epoch(memo_dir)}
    schema = table.schema.with_metadata({_META: json.dumps({**meta, **stamp})})
    fd, tmp = tempfile.mkstemp(dir=memo_dir, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            # A few large record batches (the file opens in one read of a short footer), each made contiguous
            # alone: a copy of the whole result at once would be a second output frame at the run's peak.
            for start in range(0, max(table.num_rows, 1), constants.MEMO_BATCH_ROWS):
                for batch in table.slice(start, constants.MEMO_BATCH_ROWS).combine_chunks().to_batches():
                    writer.write_batch(batch)
        os.replace(tmp, memo_dir / f"{call}{'.' + tag if tag else ''}.arrow")  # a mapped old file stays readable
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise
    bound(memo_dir)
    return True


def touch(stored: Stored) -> None:
    """Mark a memo used now, so the bound evicts the least recently used first."""
    with _quiet():
        os.utime(stored.path)


def bound(memo_dir: Path) -> None:
    """Remove the least recently used memo files beyond constants.MEMO_MAX_CALLS calls (a call's files count as
    one) or MEMO_MAX_BYTES bytes in all."""
    found = []
    for path in memo_dir.glob("*.arrow"):
        with _quiet():
            info = path.stat()
            found.append((info.st_mtime, info.st_size, path))
    found.sort(reverse=True)
    total, calls = 0, set()
    for _, nbytes, path in found:
        total += nbytes
        calls.add(path.name.partition(".")[0])
        if len(calls) > constants.MEMO_MAX_CALLS or total > constants.MEMO_MAX_BYTES:
            with _quiet():
                path.unlink()


def invalidate(cache_directory: str | os.PathLike) -> None:
    """Forget every memo of a cache directory: the per-row cache lost answers, and is the truth.

    The epoch goes first: a memo file that cannot be deleted (open elsewhere) is never read again.
    """
    memo_dir = directory(Path(cache_directory))
    with _quiet():
        (memo_dir / _EPOCH).unlink()
    with _opened_lock:  # let go of their maps, so the files' space is freed (and deletable where maps pin files)
        real = os.path.realpath(memo_dir)
        for path in [p for p in _opened if os.path.realpath(Path(p).parent) == real]:
            del _opened[path]
    shutil.rmtree(memo_dir, ignore_errors=True)


class _quiet:
    """Ignore a file that another process removed or replaced first."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, OSError)
