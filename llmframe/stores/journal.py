"""The answer journal: each answer is appended to a file before its worker goes on, and moves into the store later,
many at a time; a process killed meanwhile leaves its file, which the next opener replays into the store.

Issue 28: committing each loop iteration's answers (about two rows) cost a third of an online row's CPU, and the
worker's wait for that commit a tenth more. A write() is as safe against a kill as a COMMIT (both sit in the OS's
page cache until it flushes them), costs 1.5 us a row, and lets the commits be a few hundred rows each.

A journal is a series of segment files, each holding exactly the answers of one batch the writer takes; a segment
is deleted once its batch is committed, and kept (for replay) when the commit fails. A live process holds an
exclusive lock on each of its segments, so another opener replays only the files of processes that are gone.
"""

from __future__ import annotations

import contextlib
import os
import struct
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

try:  # POSIX: whether a segment's process is alive is whether its lock can be taken
    import fcntl
except ImportError:  # elsewhere no journal: answers are on disk once committed, as before
    fcntl = None

SUPPORTED = fcntl is not None
DIRECTORY = "journal"  # beside the store's database
_SUFFIX = ".log"
_HEADER = struct.Struct("<IIIB")  # key bytes, value bytes, checksum, flags
_OVERWRITE, _BINARY = 1, 2

Item = tuple[str, "str | bytes", bool]  # key, value, overwrite
Segment = tuple[int, Path]  # a segment's open descriptor (holding its lock) and its path


def _record(key: str, value: str | bytes, overwrite: bool) -> bytes:
    """One answer as it is appended: header, key, value; the checksum covers the flags, key and value."""
    flags = (_OVERWRITE if overwrite else 0) | (_BINARY if isinstance(value, bytes) else 0)
    k = key.encode()
    v = value if isinstance(value, bytes) else value.encode()
    return _HEADER.pack(len(k), len(v), zlib.crc32(v, zlib.crc32(k, flags)), flags) + k + v


def records(data: bytes) -> Iterator[Item]:
    """The answers in a segment's bytes, up to the first one a kill cut short or the disk damaged."""
    view, pos, size = memoryview(data), 0, len(data)
    while pos + _HEADER.size <= size:
        klen, vlen, crc, flags = _HEADER.unpack_from(view, pos)
        start = pos + _HEADER.size
        end = start + klen + vlen
        if end > size or klen == 0:  # cut short, or zeros a crash of the machine left (their checksum holds)
            return
        k, v = view[start : start + klen], view[start + klen : end]
        if zlib.crc32(v, zlib.crc32(k, flags)) != crc:
            return
        value = bytes(v) if flags & _BINARY else str(v, "utf-8")
        yield str(k, "utf-8"), value, bool(flags & _OVERWRITE)
        pos = end


class Journal:
    """One run's journal in a directory: append() before the worker goes on, rotate() when the writer takes a batch."""

    def __init__(self, directory: Path):
        self._directory = directory
        self._name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._count = 0
        self._segment: Segment | None = None  # opened at the first answer after a rotation: no empty files

    def append(self, items: Iterable[Item]) -> None:
        """Append answers in one write; once it returns they survive the process being killed. OSError as it comes."""
        if self._segment is None:
            self._segment = self._open()
        data = memoryview(b"".join(_record(*item) for item in items))
        while data:  # a regular file takes the whole write; the loop is for the rare short one (a signal)
            data = data[os.write(self._segment[0], data) :]

    def rotate(self) -> Segment | None:
        """The segment holding the answers appended so far (None: none were); later ones go to a new segment."""
        segment, self._segment = self._segment, None
        return segment

    def _open(self) -> Segment:
        self._directory.mkdir(exist_ok=True)
        self._count += 1
        path = self._directory / f"{self._name}-{self._count}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh name: never held by another
        except OSError:  # a file system without locks (some NFS mounts): no journal, and no file left behind
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return fd, path


def retire(segment: Segment | None, *, committed: bool) -> None:
    """After a batch's commit: its segment goes; a failed commit leaves it, unlocked, for the next opener to replay."""
    if segment is None:
        return
    fd, path = segment
    if committed:
        with contextlib.suppress(OSError):
            path.unlink()
    os.close(fd)


def replay(directory: Path, store: Callable[[Sequence[Item]], object]) -> int:
    """Move the segments of processes that are gone into the store (store(items): BaseStore.put); how many answers."""
    if not SUPPORTED:
        return 0
    moved = 0
    for path in sorted(directory.glob(f"*{_SUFFIX}"), key=_age):  # oldest first: a later refresh wins
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:  # replayed by another opener meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its process is alive, its writer moves it itself (or this file system has no locks)
                continue
            if os.fstat(fd).st_nlink == 0:  # replayed and deleted by another opener while this one waited
                continue
            with open(fd, "rb", closefd=False) as file:
                items = list(records(file.read()))
            store(items)
            moved += len(items)
            path.unlink()
        finally:
            os.close(fd)
    return moved


def _age(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # replayed and deleted by another opener meanwhile: skipped below
        return 0.0


def remove(directory: Path) -> None:
    """Delete every segment (reset_cache): a live process's writer still commits what it holds."""
    for path in directory.glob(f"*{_SUFFIX}"):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()
