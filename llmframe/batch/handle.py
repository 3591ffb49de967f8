"""The non-blocking form of a batch run: df.llm.submit(...) returns a BatchJob to check on later."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine.executor import run_sync
from ..engine.progress import Progress
from ..plan.request import Response


class BatchJob:
    """Submitted batch jobs of one call: status() now, wait() until done, result() as the frame, cancel()."""

    def __init__(self, run: Any, finish: Callable[[list[Response]], Any]):
        self._run = run
        self._finish = finish  # responses -> the frame (or series), exactly as generate builds it
        self._seen = Progress(0, show=False)  # counts what submit() and status() found done
        self._batches = run.batches(self._seen)
        self._responses: list[Response] | None = None
        run_sync(self._batches.submit)

    @property
    def id(self) -> str:
        """The job id, as llmframe.batches() and `llmframe batches status` list it."""
        return self._batches.job.id

    def status(self) -> dict:
        """Poll the provider once; the job and each of its batches (state, requests done, succeeded, failed)."""
        if self._responses is None:
            run_sync(self._batches.refresh)
        return self._batches.job.summary()

    def wait(self) -> BatchJob:
        """Block, with a progress bar, until every batch ended and its answers are in the cache."""
        if self._responses is None:
            run = self._run
            progress = Progress(len(run.prompts), show=run.show_progress, description=run.model)
            progress.advance(len(run.prompts.skipped) + self._seen.done)
            self._batches.progress = progress
            state = "stopped"
            try:
                self._responses = run_sync(self._batches.wait)
                state = "done"
            except KeyboardInterrupt:
                state = "interrupted"  # the jobs keep running: wait() again, or re-run the call, re-attaches
                raise
            finally:
                progress.close(state)
            run_sync(self._batches.aclose)
        return self

    def result(self) -> Any:
        """The frame generate would have returned (waits first if the jobs are still running)."""
        return self._finish(self.wait()._responses)

    def cancel(self) -> list[str]:
        """Cancel the running batches; answers that finished are still collected by wait() or a re-run."""
        return run_sync(self._batches.cancel)

    def __repr__(self) -> str:
        summary = self._batches.job.summary()
        return f"BatchJob(id={summary['id']!r}, model={summary['model']!r}, status={summary['status']!r})"
