"""The cache writer: answers go to the store on a thread of its own, off the loop, as they arrive."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
import warnings

import numpy as np

from .. import constants
from ..plan import vector_value
from ..plan.request import Response
from ..stores import journal as journals
from ..stores.base import BaseStore as Store


try:  # Linux: a thread's voluntary context switches (its ru_utime is counted in 4 ms ticks: time.thread_time)
    from resource import RUSAGE_THREAD, getrusage
except ImportError:  # elsewhere the wall clock alone says whether a write was slow
    RUSAGE_THREAD = getrusage = None


def _switches() -> int | None:
    """How many times this thread has blocked (waited on I/O or a lock) so far, where the system says; else None."""
    return None if getrusage is None else getrusage(RUSAGE_THREAD).ru_nvcsw


class CacheWriter:
    """Writes answers to the cache, off the workers' path.

    Where the store keeps a journal (stores/journal.py: the local cache, on POSIX), each answer is appended to it
    as it arrives, which makes it safe against a kill at once, and the answers of the last CACHE_JOURNAL_SECONDS
    (or CACHE_JOURNAL_ROWS) are committed together. Elsewhere a worker sends its next request only once its
    answer is committed (written()), and whatever piled up since the last commit goes in one transaction. Either
    way a crash re-asks at most the requests in flight, and the loop holds back new requests while more than
    CACHE_BACKLOG_ROWS answers wait for their commit (a local model's batches come many at once), so memory stays
    flat. Commits run on a thread of their own until the disk has proved fast, then on the loop itself: the
    hand-off to the thread and back cost more than the write (0.72x raw aiohttp at 20 ms).
    """

    def __init__(self, store: Store, *, model: str, overwrite: bool):
        self._store = store
        self._model = model
        self._overwrite = overwrite
        self._loop = asyncio.get_running_loop()
        self._journal = store.journal()  # None: an answer is safe once committed
        self._journaling = self._journal is not None  # False too once an append has failed (a full disk)
        self._handed: list[tuple[str, str | bytes, bool]] = []  # handed over, waiting for their commit
        self._ready = threading.Condition()
        self._closing = False
        self.backlog = 0  # answers handed over and not written yet
        self._added = 0  # answers handed over so far
        self._safe = 0  # of those, how many are in the journal or committed (or failed to be): what written() awaits
        self._waiters: collections.deque[tuple[int, asyncio.Future]] = collections.deque()
        self._failures: list[BaseException] = []
        self._lost = 0  # answers whose write failed: returned to the caller, not stored
        self._unread = 0  # rows whose lookup failed (a shared store went away): asked instead
        self.duplicates = 0  # answers another process had already stored: requests paid twice
        self._loop_thread = threading.get_ident()
        # Answers are written on the loop once the thread's writes have proved the disk fast; a journal's commits
        # start there (the thread's would wait for the GIL once per row), and leave it when one proves slow.
        self._inline = constants.CACHE_INLINE_AFTER_WRITES == 0 or self._journal is not None
        self._quick = 0  # quick writes in a row on the thread
        self._busy = False  # a write is under way (on the thread or the loop): one at a time, in order
        self._flush_due = False
        self._timer: asyncio.TimerHandle | None = None  # the journal's next commit, on the loop
        self._unjournaled = 0  # answers handed over since the journal failed (a full disk): safe once committed
        self._thread = threading.Thread(target=self._serve, name="llmframe-cache", daemon=True)
        self._thread.start()

    def add(self, key: str, response: Response, *, overwrite: bool = False) -> None:
        """Hand one answer over: into the journal now, committed with others soon (writes stay in order)."""
        item = (key, response.to_cache(self._model, time.time()), overwrite or self._overwrite)
        with self._ready:
            self._take([item])
            if threading.get_ident() != self._loop_thread:  # a local model's batch thread: the writer takes it
                self._ready.notify()
                return
        if not self._flush_due:
            self._flush_due = True
            if not self._journaling:
                # Once per loop iteration, written on the loop or woken on the thread: what arrives meanwhile joins
                # the same transaction (a wake per answer cost a GIL hand-off and a one-row transaction each).
                self._loop.call_soon(self._flush)
            else:
                self._timer = self._loop.call_later(constants.CACHE_JOURNAL_SECONDS, self._flush)
        elif self._timer is not None and (self.backlog >= constants.CACHE_JOURNAL_ROWS or not self._journaling):
            self._timer.cancel()  # enough for one transaction (or a worker waits for it): commit now, not at the timer
            self._timer = None
            self._loop.call_soon(self._flush)

    def _take(self, items: list[tuple[str, str | bytes, bool]], *, journal: bool = True) -> None:
        """Under the lock: journal the items (they are then safe) and queue them for their commit."""
        journaled = journal and self._journaling
        if journaled:
            try:
                self._journal.append(items)
                self._safe += len(items)
            except Exception as exc:  # a full disk: from now on answers are safe once committed, as without a journal
                self._failures.append(exc)
                self._journaling = journaled = False
        if not journaled:
            self._unjournaled += len(items)
        self._handed.extend(items)
        self.backlog += len(items)
        self._added += len(items)

    def _flush(self) -> None:
        """On the loop: write what was handed over, unless the thread is writing (then it takes it)."""
        self._flush_due, self._timer = False, None
        with self._ready:
            if not self._handed:
                return
            if self._busy or not self._inline:
                self._ready.notify()  # the thread takes them (woken only when there is something to write:
                return  # each wake hands it the GIL, about half a millisecond of the loop's time)
            batch, segment, unjournaled = self._batch()
        quick = self._commit(batch, segment, on_loop=True)
        with self._ready:
            self._inline = quick  # a slow write: the next ones go back to the thread
            self._done(batch, unjournaled)
            if self._handed:
                self._ready.notify()  # the thread takes what arrived from other threads meanwhile
        self._wake(self._safe)

    def _batch(self) -> tuple[list, journals.Segment | None, int]:
        """Under the lock: take what was handed over, with the journal segment holding exactly those answers."""
        batch, self._handed = self._handed, []
        segment = self._journal.rotate() if self._journal is not None else None
        unjournaled, self._unjournaled = self._unjournaled, 0
        self._busy = True
        return batch, segment, unjournaled

    def _commit(self, batch: list, segment: journals.Segment | None, *, on_loop: bool) -> bool:
        """Write a batch; its journal segment goes once it is committed (kept for replay if not). Quick or not."""
        lost = self._lost
        quick = self._timed_write(batch, on_loop=on_loop)
        try:
            journals.retire(segment, committed=self._lost == lost)
        except OSError as exc:
            self._failures.append(exc)
        return quick

    def add_vectors(self, keys: list[str], vectors: np.ndarray, tokens: list[int], latency: float | None,
                    overwrite: list[bool]) -> None:
        """add() for an embedding pack's answers: binary values (plan.vector_value), made together, handed over
        in one go. Not journaled: a pack is already a large transaction, and its megabytes written twice cost more
        CPU (0.14 s per 100,000 vectors) than its worker's wait for the commit."""
        values = vector_value.encode(vectors, tokens, latency, self._model, time.time())
        with self._ready:
            self._take([(k, v, o or self._overwrite) for k, v, o in zip(keys, values, overwrite)], journal=False)
            self._ready.notify()

    async def written(self) -> None:
        """Wait until every answer handed over so far is safe on disk (or its write has failed)."""
        if self._safe >= self._added:
            return
        future = self._loop.create_future()
        self._waiters.append((self._added, future))
        await future

    def _wake(self, written: int) -> None:
        while self._waiters and self._waiters[0][0] <= written:
            future = self._waiters.popleft()[1]
            if not future.done():  # a cancelled worker's wait
                future.set_result(None)

    @property
    def lost(self) -> int:
        """Answers whose write failed: returned to the caller, not stored."""
        return self._lost

    def lagging(self) -> bool:
        """True while the disk is behind: new requests wait, instead of answers piling up in memory."""
        return self.backlog >= constants.CACHE_BACKLOG_ROWS

    def _serve(self) -> None:
        while True:
            with self._ready:
                while (not self._handed or self._busy) and not self._closing:
                    self._ready.wait()
                if not self._handed:
                    return
                batch, segment, unjournaled = self._batch()
            quick = self._commit(batch, segment, on_loop=False)
            with self._ready:
                self._quick = self._quick + 1 if quick else 0
                self._inline = self._quick >= constants.CACHE_INLINE_AFTER_WRITES
                self._done(batch, unjournaled)
                written = self._safe
            with contextlib.suppress(RuntimeError):  # the loop has closed (interpreter exit): no one waits
                self._loop.call_soon_threadsafe(self._wake, written)

    def _done(self, batch: list, unjournaled: int) -> None:
        """Count a batch as written (under the lock); those not in the journal are safe only now."""
        self._busy = False
        self.backlog -= len(batch)
        self._safe += unjournaled

    def _timed_write(self, batch: list[tuple[str, str | bytes, bool]], *, on_loop: bool) -> bool:
        """Write the batch; True when it was quick enough to write on the loop.

        Slow: over CACHE_INLINE_WRITE_SECONDS (a journal's larger batches: CACHE_JOURNAL_INLINE_SECONDS) of CPU, or
        of waiting on the disk (on the loop: time it blocked, a voluntary context switch; on the thread, where waits
        for the GIL block it too, only past CACHE_SLOW_WRITE_SECONDS, or twice the journal's limit). A write that a
        busy machine merely descheduled is not slow: it would be on the thread too, plus the hand-offs (issue 28:
        under load the wall clock sent one write in ten to the thread).
        """
        journaled = self._journaling
        limit = constants.CACHE_JOURNAL_INLINE_SECONDS if journaled else constants.CACHE_INLINE_WRITE_SECONDS
        slow = 2 * limit if journaled else constants.CACHE_SLOW_WRITE_SECONDS
        try:
            start, cpu, switches = time.perf_counter(), time.thread_time(), _switches()
            self._write(batch)
            wall = time.perf_counter() - start
            if wall < limit:
                return True
            if time.thread_time() - cpu >= limit or switches is None:
                return False
            return wall < slow if not on_loop else _switches() == switches
        except Exception as exc:  # a writer that raised would never wake its waiters: the run would hang
            self._failures.append(exc)
            self._lost += len(batch)
            return False

    def _write(self, batch: list[tuple[str, str | bytes, bool]]) -> None:
        try:
            self.duplicates += self._store.put(batch)
        except Exception as exc:  # a full disk, a lost server must not lose the run: the answers are still returned
            self._failures.append(exc)
            self._lost += len(batch)

    def unread(self, exc: BaseException, rows: int) -> None:
        """A lookup failed (the store went away mid-run): its rows are asked, and the failure is reported at close."""
        self._failures.append(exc)
        self._unread += rows

    def close(self) -> None:
        """Write everything still handed over and wait for it: called on success, failure and cancel."""
        if self._timer is not None:  # the thread commits what the timer would have
            self._timer.cancel()
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        try:
            self._store.trim()
        except Exception as exc:
            self._failures.append(exc)
        if self._failures:
            said = [f"{self._lost:,} answers could not be written to the cache"] if self._lost else []
            if self._unread:
                said.append(f"{self._unread:,} rows could not be looked up in it, so they were asked")
            if self._journal is not None and not self._journaling:
                said.append("its journal could not be written, so answers were safe only once committed")
            said = said or ["answers could not be written to the cache (trimming it failed)"]
            warnings.warn(f"{' and '.join(said)} ({self._store.location}): {self._failures[0]}", RuntimeWarning,
                          stacklevel=2)
