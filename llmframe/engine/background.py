"""Background runs: df.llm.submit(..., mode="online") starts the run on the engine's loop and returns a handle.

    job = df.llm.submit("...{text}", model="openai:gpt-4o-mini", mode="online")   # returns at once
    job.status(); job.result(partial=True); job.wait(); out = job.result(); job.cancel()
    llmframe.jobs()                                          # this process's jobs, running and finished

The handle is frame-agnostic: it holds the plan and what the run did, and turns an outcome into a frame
through the function the face that made it passed in (pandas today; any face the same way). Every
background run shares the engine's loop, and so the per-provider rate limits, with every other run of
the process. Answers go to the cache as they arrive: a kernel restart loses the job, not its answers.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from .. import constants
from .answers import Answers
from .loop import call_soon, in_background, run_sync
from .outcome import Counters, Live, Outcome
from .progress import Progress, in_notebook, should_show

if TYPE_CHECKING:
    from ..plan.build import Plan

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class Job(Protocol):
    """What llmframe.jobs() lists: an online job (OnlineJob) or a batch job (llmframe.batch.BatchJob)."""

    id: str
    running: bool


_JOBS: OrderedDict[str, Job] = OrderedDict()
_JOBS_LOCK = threading.Lock()


def register(job: Job) -> None:
    """Remember a job for llmframe.jobs(); the oldest finished ones are let go past REMEMBERED_JOBS."""
    with _JOBS_LOCK:
        _JOBS[job.id] = job
        finished = [key for key, known in _JOBS.items() if not known.running]
        for key in finished[: max(0, len(finished) - constants.REMEMBERED_JOBS)]:
            del _JOBS[key]


@atexit.register
def _cancel_running() -> None:
    """A script that ends with jobs running: cancel them, so that every answer they finished reaches the cache.

    The engine's threads are daemons: without this, answers not yet written would die with them.
    """
    for job in jobs():
        if isinstance(job, OnlineJob) and job.running:
            print(f"llmframe: job {job.id} was still running at exit: cancelled ({job.status()['done']:,} of "
                  f"{job.status()['rows']:,} rows done, their answers cached; re-run the call for the rest)",
                  file=sys.stderr)
            job.cancel()


def jobs() -> list[Job]:
    """This process's background and batch jobs, oldest first: every running one, and the recent finished ones."""
    with _JOBS_LOCK:
        return list(_JOBS.values())


class _JobProgress(Progress):
    """A job's display: a cancelled job's bar says cancelled, not interrupted."""

    cancelled = False

    def close(self, state: str) -> None:
        super().close("cancelled" if self.cancelled and state == "interrupted" else state)


class OnlineJob:
    """One online run on the engine's loop: status() now, wait() until it ends, result() as the frame, cancel()."""

    def __init__(self, plan: Plan, finish: Callable[[Outcome], Any]):
        from .run import start

        self.id = f"on-{uuid.uuid4().hex[:12]}"
        self._plan = plan
        self._finish = finish  # an outcome -> the frame (or series), exactly as generate builds it
        # The widget is made in the caller's thread, so it lives in the cell that submitted the job; a terminal
        # bar from a background thread would scribble over the prompt, so there it waits for wait().
        self._shown = plan.progress is True or (plan.progress is None and in_notebook())
        self._progress = _JobProgress(len(plan.prompts), show=False, description=plan.model)
        self._live = Live()
        self._state, self._error = RUNNING, None
        self._outcome: Outcome | None = None
        self._ended = threading.Event()
        self._task: asyncio.Task | None = None
        self._cancel_asked = False
        run = start(plan, progress=self._progress, live=self._live)  # bad input raises here, nothing is sent
        if self._shown:
            self._progress.display()  # once the run can start: a refused one leaves no empty bar behind
        self._started = time.monotonic()
        self._seconds: float | None = None
        in_background(lambda: self._run(run))
        register(self)

    async def _run(self, run: Callable[[], Awaitable[Outcome]]) -> None:
        """The run, on the engine's loop; whatever ends it is recorded, never raised into the loop."""
        try:
            self._task = asyncio.current_task()
            if self._cancel_asked:  # cancel() came before the run's first step
                raise asyncio.CancelledError
            self._outcome = await run()
            self._state = DONE
        except asyncio.CancelledError:
            self._state = CANCELLED
        except Exception as exc:  # the run's own end (the circuit breaker, a bad key): result() raises it
            self._error, self._state = exc, FAILED
        finally:
            self._seconds = time.monotonic() - self._started
            self._ended.set()  # on_done= has run by now: engine.run.execute calls the run callbacks

    @property
    def running(self) -> bool:
        """True until the run ended (done, failed or cancelled)."""
        return not self._ended.is_set()

    @property
    def state(self) -> str:
        """"running", "done", "failed" or "cancelled"."""
        return self._state

    def status(self) -> dict:
        """Now: rows done, cached, failed and pending, tokens, cost, rows a second, seconds so far and left.

        rows_per_second counts rows answered by the model (not the cache); seconds_left is None until
        there is a rate to go on. Every count only grows while the job runs.
        """
        p = self._progress
        done, cached, failed, tokens = int(p.done), int(p.cached), int(p.failed), int(p.tokens)  # read once each
        cost = None if p.cost is None else float(p.cost)
        seconds = self._seconds if self._seconds is not None else time.monotonic() - self._started
        answered = done - cached - len(self._plan.prompts.skipped)
        rate = float(answered / seconds) if seconds > 0 else 0.0
        left = p.total - done
        if not self.running:
            seconds_left: float | None = 0.0
        else:
            seconds_left = left / rate if rate > 0 else None
        status = {"id": self.id, "model": self._plan.model, "mode": "online", "state": self._state,
                  "rows": p.total, "done": done, "cached": cached, "failed": failed, "pending": left,
                  "tokens": tokens, "cost": cost, "rows_per_second": round(rate, 3), "seconds": round(seconds, 3),
                  "seconds_left": None if seconds_left is None else round(seconds_left, 3)}
        if self._error is not None:
            status["error"] = f"{type(self._error).__name__}: {self._error}"
        return status

    def wait(self, timeout: float | None = None) -> OnlineJob:
        """Block until the job ends (or timeout seconds pass), with a progress bar; Ctrl-C stops the waiting only.

        In a notebook the job's own widget, in the cell that submitted it, is the bar; elsewhere wait()
        draws one that follows the job.
        """
        follower = None
        if not self._shown and should_show(self._plan.progress):
            follower = Progress(self._progress.total, show=True, description=self._plan.model)
        deadline = None if timeout is None else time.monotonic() + timeout
        state = "waiting stopped (the job goes on)"
        try:
            while not self._ended.wait(constants.PROGRESS_REFRESH_SECONDS):
                if follower is not None:
                    _follow(self._progress, follower)
                if deadline is not None and time.monotonic() >= deadline:
                    break
            else:
                state = {DONE: "done", CANCELLED: "cancelled"}.get(self._state, "stopped")
        finally:  # a KeyboardInterrupt ends only this wait: the job's task on the engine's loop goes on
            if follower is not None:
                _follow(self._progress, follower)
                follower.close(state)
        return self

    def result(self, *, partial: bool = False) -> Any:
        """The frame generate would have returned; waits for the end first unless partial=True.

        partial=True: the rows answered so far, the rest missing with "pending" in the error column, aligned
        as always. A cancelled job's result is its finished rows, the rest marked so. A job that failed
        (the circuit breaker, a bad key) raises its error, as generate would.
        """
        if not partial:
            self.wait()
        if self._outcome is not None:
            return self._finish(self._outcome)
        if self._error is not None and not partial:
            raise self._error
        note = constants.JOB_CANCELLED if self._state == CANCELLED else constants.JOB_PENDING
        if self._state == FAILED:
            note = None  # the run stopped: its unanswered rows failed, as generate reports them
        return self._finish(run_sync(lambda: self._look(note)))

    async def _look(self, note: str | None) -> Outcome:
        """What the run has done so far, copied on the engine's loop (where the answers are written)."""
        live = self._live
        answers = live.answers.snapshot() if live.answers is not None else Answers(len(self._plan.keys))
        counters = replace(live.counters) if live.counters is not None else Counters()
        seconds = self._seconds if self._seconds is not None else time.monotonic() - self._started
        return Outcome(answers, counters, seconds, pending_note=note)

    def cancel(self) -> OnlineJob:
        """Stop the run now: requests in flight are dropped, every finished answer is in the cache on return.

        Waits at most CANCEL_GRACE_SECONDS for the run to wind down, as an interrupt does.
        """
        if self.running:
            self._progress.cancelled = True
            call_soon(self._cancel_on_loop)
            self._ended.wait(constants.CANCEL_GRACE_SECONDS)
        return self

    def _cancel_on_loop(self) -> None:
        self._cancel_asked = True
        if self._task is not None:
            self._task.cancel()

    def __repr__(self) -> str:
        s = self.status()
        return (f"OnlineJob(id={s['id']!r}, model={s['model']!r}, state={s['state']!r}, "
                f"done={s['done']:,}/{s['rows']:,}, failed={s['failed']:,})")


def _follow(source: Progress, bar: Progress) -> None:
    """Bring a follower bar up to the job's counts, and redraw it."""
    for name in ("done", "cached", "failed", "skipped", "first_error", "tokens", "cost"):
        setattr(bar, name, getattr(source, name))
    bar.refresh()
