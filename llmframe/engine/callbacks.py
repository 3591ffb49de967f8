"""Run callbacks (on_row=, on_progress=, on_done=), called on one worker thread of their own.

The engine's loop only appends to a queue: a slow callback (a database insert, an MLflow call) never
holds a request back, and one that raises is counted and reported, never taking an answer with it.
The run waits for the queue to drain before it returns, so every row has been seen when generate does.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import constants

if TYPE_CHECKING:
    from ..plan.build import Callbacks, Plan
    from ..plan.request import Response
    from .answers import Answers
    from .outcome import Outcome
    from .progress import Progress


@dataclass(frozen=True)
class RowEvent:
    """One finished row, as on_row receives it."""

    row: int  # the row's position in the frame
    index: Any  # the row's index label
    answer: Any  # the answer text, or the validated object of a structured output; None when it failed
    error: str | None
    usage: dict  # input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost,
    # latency, finish_reason
    cached: bool  # served from llmframe's cache, not sent


class Dispatcher:
    """The callbacks of one run: events queued from the loop, called in order on a worker thread."""

    def __init__(self, plan: Plan, callbacks: Callbacks):
        self.plan, self.callbacks = plan, callbacks
        self._queue: deque = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._progress_pending: dict | None = None  # the latest status only: a slow on_progress skips stale ones
        self.errors: list[str] = []  # "on_row raised ValueError: ..." for the first few, counted in failures
        self.failures = 0
        self._rows: tuple[np.ndarray, np.ndarray] | None = None  # rows sorted by key, each key's first slot
        self._thread = threading.Thread(target=self._work, name="llmframe-callbacks", daemon=True)
        self._thread.start()

    # --- called on the engine's loop: cheap, never blocking --------------
    def row(self, j: int, response: Response, cost: float | None = None) -> None:
        """Request j is finished (answered, failed or from the cache): each of its rows goes to on_row."""
        if self.callbacks.on_row is not None:
            self._put(("row", j, response, cost))

    def progress(self, progress: Progress) -> None:
        """The run's counts now, for on_progress (only the latest waits, if the callback is behind)."""
        if self.callbacks.on_progress is None:
            return
        status = {"rows": progress.total, "done": int(progress.done), "cached": int(progress.cached),
                  "failed": int(progress.failed), "tokens": int(progress.tokens),
                  "cost": None if progress.cost is None else float(progress.cost)}
        with self._wake:
            first = self._progress_pending is None
            self._progress_pending = status
            if first:
                self._queue.append(("progress",))
            self._wake.notify()


    def _put(self, item: tuple) -> None:
        with self._wake:
            self._queue.append(item)
            self._wake.notify()

    # --- the end of the run: off the loop ---------------------------------
    def end(self, report: Callable[[], dict]) -> None:
        """Wait until every queued callback has run, then call on_done with report(); warn of those that raised."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        if self.callbacks.on_done is not None:
            self._call(("done", report()))
        if self.failures:
            warnings.warn(f"llmframe: run callbacks raised {self.failures} time(s); every answer is kept (first: "
                          f"{self.errors[0]})", RuntimeWarning, stacklevel=2)

    def reported(self) -> list[str]:
        """The callback errors, for the run report."""
        more = self.failures - len(self.errors)
        return self.errors + ([f"... and {more} more"] if more > 0 else [])

    # --- the worker thread -------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    return
                item = self._queue.popleft()
                if item[0] == "progress":
                    status, self._progress_pending = self._progress_pending, None
                    item = ("progress", status)
            self._call(item)

    def _call(self, item: tuple) -> None:
        kind = item[0]
        try:
            if kind == "row":
                self._rows_of(*item[1:])
            elif kind == "progress":
                self.callbacks.on_progress(item[1])
            else:
                self.callbacks.on_done(item[1])  # the report: after every row, and with their failures
        except Exception as exc:  # a callback's own failure: reported, never the run's
            self._failed(f"on_{kind}", exc)

    def _rows_of(self, j: int, response: Response, cost: float | None) -> None:
        """on_row for every row request j answers (a duplicated prompt serves several rows)."""
        order, starts = self._index()
        answer = None if response.error is not None else (
            response.parsed if response.parsed is not None else response.text)
        usage = {"input_tokens": response.input_tokens, "output_tokens": response.output_tokens,
                 "cached_input_tokens": response.cached_input_tokens,
                 "cache_write_tokens": response.cache_write_tokens,
                 "reasoning_tokens": getattr(response, "reasoning_tokens", 0), "cost": cost,
                 "latency": response.latency, "finish_reason": response.finish_reason}
        label = self.callbacks.label
        for position in order[starts[j]:starts[j + 1]].tolist():
            event = RowEvent(position, label(position) if label is not None else position, answer, response.error,
                             usage, response.cached)
            try:
                self.callbacks.on_row(event)
            except Exception as exc:
                self._failed("on_row", exc)

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows ordered by their key, and where each key's rows start: made once, on this thread."""
        if self._rows is None:
            row_to_key = np.asarray(self.plan.row_to_key)
            order = np.argsort(row_to_key, kind="stable")
            order = order[row_to_key[order] >= 0]  # skipped rows are never answered
            starts = np.searchsorted(row_to_key[order], np.arange(len(self.plan.keys) + 1))
            self._rows = order, starts
        return self._rows

    def _failed(self, where: str, exc: Exception) -> None:
        self.failures += 1
        if len(self.errors) < constants.ERROR_SAMPLES:
            frame = traceback.extract_tb(exc.__traceback__)[-1:]
            at = f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""
            self.errors.append(f"{where} raised {type(exc).__name__}: {exc}{at}")

    def all_rows(self, answers: Answers) -> None:
        """on_row for every finished request of a run answered all at once (a batch run)."""
        if self.callbacks.on_row is None:
            return
        for j in np.flatnonzero(answers.done).tolist():
            self.row(j, answers[j])



async def with_callbacks(plan: Plan, progress: Progress,
                         run: Callable[[Dispatcher], Awaitable[Outcome]]) -> Outcome:
    """run(dispatcher); then on_progress's last counts, every queued call, and on_done's report, off the loop.

    A run that ends in an exception (the circuit breaker, a cancel) still drains what was queued, and
    on_done gets {"model", "rows", "state": "stopped", "error"} instead of a report.
    """
    from ..collect.columns import report

    events = Dispatcher(plan, plan.callbacks)
    loop = asyncio.get_running_loop()
    try:
        outcome = await run(events)
    except BaseException as exc:
        stopped = {"model": plan.model, "rows": len(plan.prompts), "state": "stopped",
                   "error": f"{type(exc).__name__}: {exc}"}
        await asyncio.shield(loop.run_in_executor(None, events.end, lambda: stopped))
        raise
    events.progress(progress)
    outcome = replace(outcome, callback_errors=tuple(events.reported()))

    def made() -> dict:
        # After every on_row call: the report counts what they raised.
        return {**report(plan, replace(outcome, callback_errors=tuple(events.reported()))), "state": "done"}

    await loop.run_in_executor(None, events.end, made)
    return replace(outcome, callback_errors=tuple(events.reported()))
