"""The non-blocking form of a batch run: df.llm.submit(...) returns a BatchJob to check on later."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine.background import register
from ..engine.loop import run_sync
from ..engine.outcome import Counters, Outcome
from ..errors import ConfigError
from ..engine.progress import Progress, should_show

if TYPE_CHECKING:
    from ..plan.build import Plan


class BatchJob:
    """Submitted batch jobs of one call: status() now, wait() until done, result() as the frame, cancel()."""

    def __init__(self, plan: Plan, finish: Callable[[Outcome], Any]):
        from ..engine.run import batch_jobs, prepare

        self._plan = plan
        self._finish = finish  # the outcome -> the frame (or series), exactly as generate builds it
        self._seen = Progress(0, show=False)  # counts what submit() and status() found done
        provider, store, self._meter = prepare(plan)
        self._counters = Counters()
        self._batches = batch_jobs(plan, provider, store=store, meter=self._meter, progress=self._seen,
                                counters=self._counters)
        self._outcome: Outcome | None = None
        run_sync(self._batches.submit)
        register(self)

    @property
    def id(self) -> str:
        """The job id, as llmframe.batches() and `llmframe batches status` list it."""
        return self._batches.job.id

    @property
    def running(self) -> bool:
        """True until wait() (or result()) collected the answers: the batches may run at the provider until then."""
        return self._outcome is None

    def status(self) -> dict:
        """Poll the provider once; the job and each of its batches (state, requests done, succeeded, failed)."""
        if self._outcome is None:
            run_sync(self._batches.refresh)
        return self._batches.job.summary()

    def wait(self) -> BatchJob:
        """Block, with a progress bar, until every batch ended and its answers are in the cache."""
        if self._outcome is None:
            plan = self._plan
            progress = Progress(len(plan.prompts), show=should_show(plan.progress), description=plan.model)
            progress.advance(len(plan.prompts.skipped) + self._seen.done)
            self._batches.progress = progress
            state = "stopped"
            try:
                answers = run_sync(self._batches.wait)
                self._outcome = Outcome(answers, self._counters, job_id=self._batches.job.id, budget=self._meter.budget)
                state = "done"
            except KeyboardInterrupt:
                state = "interrupted"  # the jobs keep running: wait() again, or re-run the call, re-attaches
                raise
            finally:
                progress.close(state)
            run_sync(self._batches.aclose)
        return self

    def result(self, *, partial: bool = False) -> Any:
        """The frame generate would have returned (waits first if the jobs are still running)."""
        if partial:
            raise ConfigError("partial=True is for online jobs (submit(..., mode='online')); a batch job's answers "
                              "come back batch by batch: job.status() counts them, job.result() collects them")
        return self._finish(self.wait()._outcome)

    def cancel(self) -> list[str]:
        """Cancel the running batches; answers that finished are still collected by wait() or a re-run."""
        return run_sync(self._batches.cancel)

    def __repr__(self) -> str:
        summary = self._batches.job.summary()
        return f"BatchJob(id={summary['id']!r}, model={summary['model']!r}, status={summary['status']!r})"
