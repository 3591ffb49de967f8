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
from ..stores.base import BaseStore as Store


try:  # Linux: a thread's voluntary context switches (its ru_utime is counted in 4 ms ticks: time.thread_time)
    from resource import RUSAGE_THREAD, getrusage
except ImportError:  # elsewhere the wall clock alone says whether a write was slow
    RUSAGE_THREAD = getrusage = None


def _switches() -> int | None:
    """How many times this thread has blocked (waited on I/O or a lock) so far, where the system says; else None."""
    return None if getrusage is None else getrusage(RUSAGE_THREAD).ru_nvcsw


class CacheWriter:
    """Writes answers to the cache on a thread of its own, off the loop.

    Each answer is handed over as it arrives, and whatever has piled up since the last write goes in
    one transaction, so the writer keeps pace however fast answers come. A worker sends its next
    request only once its answer is on disk (written()), so a crash re-asks at most the requests in
    flight; and the loop holds back new requests while more than CACHE_BACKLOG_ROWS answers wait for
    the disk (a local model's batches come many at once), so memory stays flat. Once the disk has
    proved fast, a loop iteration's answers are written on the loop itself, in one transaction: the
    hand-off to the thread and back cost more than the write (0.72x raw aiohttp at 20 ms).
    """

    def __init__(self, store: Store, *, model: str, overwrite: bool):
        self._store = store
        self._model = model
        self._overwrite = overwrite
        self._loop = asyncio.get_running_loop()
        self._handed: list[tuple[str, str, bool]] = []  # handed over, waiting for the writer thread
        self._ready = threading.Condition()
        self._closing = False
        self.backlog = 0  # answers handed over and not written yet
        self._added = 0  # answers handed over so far
        self._written = 0  # of those, how many are written (or failed to be); set by the writer thread
        self._waiters: collections.deque[tuple[int, asyncio.Future]] = collections.deque()
        self._failures: list[BaseException] = []
        self._lost = 0  # answers whose write failed: returned to the caller, not stored
        self._unread = 0  # rows whose lookup failed (a shared store went away): asked instead
        self.duplicates = 0  # answers another process had already stored: requests paid twice
        self._loop_thread = threading.get_ident()
        # Answers are written on the loop once the thread's writes have proved the disk fast.
        self._inline = constants.CACHE_INLINE_AFTER_WRITES == 0
        self._quick = 0  # quick writes in a row on the thread
        self._busy = False  # a write is under way (on the thread or the loop): one at a time, in order
        self._flush_due = False
        self._thread = threading.Thread(target=self._serve, name="llmframe-cache", daemon=True)
        self._thread.start()

    def add(self, key: str, response: Response, *, overwrite: bool = False) -> None:
        """Hand one answer to the writer thread now (writes stay in order: one thread)."""
        item = (key, response.to_cache(self._model, time.time()), overwrite or self._overwrite)
        with self._ready:
            self._handed.append(item)
            self.backlog += 1
            self._added += 1
            if threading.get_ident() != self._loop_thread:  # a local model's batch thread: the writer takes it
                self._ready.notify()
                return
        # Once per loop iteration, written on the loop or woken on the thread: what arrives meanwhile joins the same
        # transaction (a wake per answer cost a GIL hand-off and a one-row transaction each).
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """On the loop: write what was handed over, unless the thread is writing (then it takes it)."""
        self._flush_due = False
        with self._ready:
            if not self._handed:
                return
            if self._busy or not self._inline:
                self._ready.notify()  # the thread takes them (woken only when there is something to write:
                return  # each wake hands it the GIL, about half a millisecond of the loop's time)
            batch, self._handed = self._handed, []
            self._busy = True
        quick = self._timed_write(batch, on_loop=True)
        with self._ready:
            self._inline = quick  # a slow write: the next ones go back to the thread
            self._done(batch)
            if self._handed:
                self._ready.notify()  # the thread takes what arrived from other threads meanwhile
        self._wake(self._written)

    def add_vectors(self, keys: list[str], vectors: np.ndarray, tokens: list[int], latency: float | None,
                    overwrite: list[bool]) -> None:
        """add() for an embedding pack's answers: binary values (plan.vector_value), made together, handed over
        in one go."""
        values = vector_value.encode(vectors, tokens, latency, self._model, time.time())
        with self._ready:
            self._handed.extend((k, v, o or self._overwrite) for k, v, o in zip(keys, values, overwrite))
            self.backlog += len(keys)
            self._added += len(keys)
            self._ready.notify()

    async def written(self) -> None:
        """Wait until every answer handed over so far is on disk (or its write has failed)."""
        if self._written >= self._added:
            return
        future = self._loop.create_future()
        self._waiters.append((self._added, future))
        await future

    def _wake(self, written: int) -> None:
        while self._waiters and self._waiters[0][0] <= written:
            future = self._waiters.popleft()[1]
            if not future.done():  # a cancelled worker's wait
                future.set_result(None)

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
                batch, self._handed = self._handed, []
                self._busy = True
            quick = self._timed_write(batch, on_loop=False)
            with self._ready:
                self._quick = self._quick + 1 if quick else 0
                self._inline = self._quick >= constants.CACHE_INLINE_AFTER_WRITES
                self._done(batch)
                written = self._written
            with contextlib.suppress(RuntimeError):  # the loop has closed (interpreter exit): no one waits
                self._loop.call_soon_threadsafe(self._wake, written)

    def _done(self, batch: list) -> None:
        """Count a batch as written (under the lock)."""
        self._busy = False
        self.backlog -= len(batch)
        self._written += len(batch)

    def _timed_write(self, batch: list[tuple[str, str, bool]], *, on_loop: bool) -> bool:
        """Write the batch; True when it was quick enough to write on the loop.

        Slow: over CACHE_INLINE_WRITE_SECONDS of CPU, or of waiting on the disk (on the loop: time it blocked, a
        voluntary context switch; on the thread, where waits for the GIL block it too, only past
        CACHE_SLOW_WRITE_SECONDS). A write that a busy machine merely descheduled is not slow: it would be on the
        thread too, plus the hand-offs (issue 28: under load the wall clock sent one write in ten to the thread).
        """
        try:
            start, cpu, switches = time.perf_counter(), time.thread_time(), _switches()
            self._write(batch)
            wall = time.perf_counter() - start
            if wall < constants.CACHE_INLINE_WRITE_SECONDS:
                return True
            if time.thread_time() - cpu >= constants.CACHE_INLINE_WRITE_SECONDS or switches is None:
                return False
            return wall < constants.CACHE_SLOW_WRITE_SECONDS if not on_loop else _switches() == switches
        except Exception as exc:  # a writer that raised would never wake its waiters: the run would hang
            self._failures.append(exc)
            self._lost += len(batch)
            return False

    def _write(self, batch: list[tuple[str, str, bool]]) -> None:
        try:
            for overwrite in (False, True):
                items = [(key, value) for key, value, replace in batch if replace is overwrite]
                self.duplicates += self._store.set_many(items, overwrite=overwrite)
        except Exception as exc:  # a full disk, a lost server must not lose the run: the answers are still returned
            self._failures.append(exc)
            self._lost += len(batch)

    def unread(self, exc: BaseException, rows: int) -> None:
        """A lookup failed (the store went away mid-run): its rows are asked, and the failure is reported at close."""
        self._failures.append(exc)
        self._unread += rows

    def close(self) -> None:
        """Write everything still handed over and wait for it: called on success, failure and cancel."""
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
            said = said or ["answers could not be written to the cache (trimming it failed)"]
            warnings.warn(f"{' and '.join(said)} ({self._store.location}): {self._failures[0]}", RuntimeWarning,
                          stacklevel=2)
