"""Progress: counters bumped per row, drawn by tqdm.auto (a widget in notebooks, a bar in terminals).

The bar shows rows done / total, then cached, failed, tokens and, once a run reports spending
(advance(..., cost=dollars) from whatever prices the tokens), its cost; while the server holds the pool
back, "paused until HH:MM:SS" and why. It redraws at most every PROGRESS_REFRESH_SECONDS, however fast rows finish, and ends
in one of four final states, by description and colour: complete (green), complete with N
failed rows (amber), every row failed, with the first error (red), or stopped / interrupted (red).
"""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .. import constants

# outcome -> (notebook widget bar_style, terminal bar colour)
_STYLES = {
    "complete": ("success", "green"),
    "failures": ("warning", "yellow"),
    "all_failed": ("danger", "red"),
    "stopped": ("danger", "red"),
    "interrupted": ("danger", "red"),
}


def in_notebook() -> bool:
    """True inside a Jupyter kernel, where tqdm.auto draws an ipywidgets bar."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def should_show(progress: bool | None) -> bool:
    """progress=None means: show it where a person is watching (a notebook or a terminal), not in logs."""
    if progress is not None:
        return bool(progress)
    return in_notebook() or bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """Live counters for one run; cheap to bump, drawn only by refresh()."""

    def __init__(self, total: int, *, show: bool, description: str = "llmframe"):
        self.total = total
        self.description = description
        self.done = 0
        self.cached = 0
        self.failed = 0
        self.skipped = 0
        self.first_error: str | None = None  # what the final state quotes when every row failed
        self.tokens = 0
        self.prompt_cached = 0  # input tokens the provider's prompt cache served
        self.prompt_saved: float | None = None  # dollars the prompt cache took off (its writes netted), where priced
        self.cost: float | None = None  # dollars; stays None (and off the bar) until a run reports a price
        self._drawn = 0
        self.note = ""  # a short live status shown after the counters (batch jobs: requests done per job)
        self.pause = ""  # "paused until HH:MM:SS (why)" while the server holds the pool back
        self.pause_by: Progress | None = None  # the run's part of a shared bar that showed the pause
        self._limiter = None  # the run's ratelimit.Limiter, whose pauses the bar shows
        self._drawn_status = ("", "")
        self._bar = None
        if show:
            self.display()

    def display(self) -> None:
        """Open the bar now: in a notebook, in the cell this thread is running (a background job's, once it started)."""
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.total,
            desc=self.description,
            unit="row",
            mininterval=constants.PROGRESS_REFRESH_SECONDS,
            dynamic_ncols=True,
        )
        self._bar.set_postfix_str(self.summary(), refresh=False)

    def advance(self, rows: int, *, cached: bool = False, failed: bool = False, tokens: int = 0,
                cost: float | None = None, skipped: bool = False, error: str | None = None,
                prompt_cached: int = 0, saved: float | None = None) -> None:
        """Count rows finished (and their cost in dollars, where priced); drawing waits for the next refresh."""
        self.done += rows
        self.prompt_cached += prompt_cached
        if saved is not None:
            self.prompt_saved = (self.prompt_saved or 0.0) + saved
        if cached:
            self.cached += rows
        if failed:
            self.failed += rows
            self.first_error = self.first_error or error
        if skipped:
            self.skipped += rows
        self.tokens += tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def summary(self) -> str:
        """The counters as the bar shows them after rows done / total."""
        parts = [f"cached={self.cached:,}", f"failed={self.failed:,}", f"tokens={self.tokens:,}"]
        if self.prompt_cached:
            saved = "" if self.prompt_saved is None else f" (saved ${self.prompt_saved:,.4f})"
            parts.append(f"prompt-cached={self.prompt_cached:,}{saved}")
        if self.cost is not None:
            parts.append(f"cost=${self.cost:,.4f}")
        if self.note:
            parts.append(f"jobs={self.note}")
        if self.pause:
            parts.append(self.pause)
        return ", ".join(parts)

    def watch(self, limiter) -> None:
        """Show the pauses of this limiter (a ratelimit.Limiter) while they last."""
        self._limiter = limiter

    def _look(self) -> None:
        if self._limiter is not None:
            self.show_pause(self._limiter.paused_until - time.monotonic(), self._limiter.pause_reason)

    def show_pause(self, seconds: float, why: str) -> None:
        """Say the pool waits seconds more, and why (the next refresh draws it); a short or past pause says nothing."""
        if seconds <= constants.PAUSE_SHOWN_SECONDS:
            self.pause = ""
        else:
            self.pause = f"paused until {time.strftime('%H:%M:%S', time.localtime(time.time() + seconds))} ({why})"

    def refresh(self) -> None:
        """Bring the bar up to date with the counters."""
        self._look()
        status = (self.note, self.pause)
        if self._bar is None or (self.done == self._drawn and status == self._drawn_status):
            return
        self._bar.set_postfix_str(self.summary(), refresh=False)
        if self.done == self._drawn:
            self._bar.refresh()  # only the status changed: update(0) may not redraw once tqdm sets miniters
        else:
            self._bar.update(self.done - self._drawn)
        self._drawn, self._drawn_status = self.done, status

    def outcome(self, state: str) -> tuple[str, str]:
        """(kind, words) of the final state: kind is a key of _STYLES, words go in the description."""
        if state == "interrupted":
            total = "?" if self.total is None else f"{self.total:,}"  # a CSV's length is known only at its end
            return "interrupted", f"interrupted at {self.done:,}/{total}"
        if state != "done":  # the executor's "stopped", or a caller's own reason
            failed = f", {self.failed:,} failed" if self.failed else ""
            return "stopped", f"{state}{failed}"
        if self.failed and self.failed >= self.done - self.skipped:  # not one row answered: red, and why
            first = f": {_cut(self.first_error)}" if self.first_error else ""
            return "all_failed", f"all {self.failed:,} failed{first}"
        if self.failed:
            return "failures", f"complete, {self.failed:,} failed"
        return "complete", "complete"

    def close(self, state: str) -> None:
        """Draw the final state: 'done' (complete, perhaps with failed rows), 'interrupted', or why it stopped."""
        self._limiter, self.pause = None, ""  # the final state says how the run ended, not a pause
        if self._bar is None:
            return
        self.refresh()
        kind, words = self.outcome(state)
        bar_style, colour = _STYLES[kind]
        bar, self._bar = self._bar, None
        bar.set_description(f"{self.description} ({words})", refresh=False)
        bar.set_postfix_str(self.summary(), refresh=False)
        if hasattr(bar, "container"):  # the notebook widget: its bar_style, set after close() picks its own
            bar.close()
            bar.disp(bar_style=bar_style, check_delay=False)
        else:
            bar.colour = colour
            bar.close()


def _cut(text: str) -> str:
    """An error cut to what a bar's description can hold."""
    limit = constants.PROGRESS_ERROR_CHARS
    return text if len(text) <= limit else text[: limit - 1] + "…"


# A bar that runs started in this context count into, instead of opening their own (llmframe run's, over chunks).
_shared: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("llmframe_shared_progress", default=None)


@contextmanager
def shared(progress: Progress) -> Iterator[Progress]:
    """Within this block every run counts into progress, and closing a run's part leaves the bar open."""
    token = _shared.set(progress)
    try:
        yield progress
    finally:
        _shared.reset(token)


def for_run(total: int, *, show: bool, description: str) -> Progress:
    """A run's progress: its own bar, or its part of the shared bar when one is open."""
    outer = _shared.get()
    return Progress(total, show=show, description=description) if outer is None else _Part(outer)


class _Part(Progress):
    """One run's view of a shared bar: counts go through to it, closing only redraws it."""

    def __init__(self, outer: Progress):
        super().__init__(0, show=False)
        self._outer = outer

    def advance(self, rows: int, *, cached: bool = False, failed: bool = False, tokens: int = 0,
                cost: float | None = None, skipped: bool = False, error: str | None = None,
                prompt_cached: int = 0, saved: float | None = None) -> None:
        super().advance(rows, cached=cached, failed=failed, tokens=tokens, cost=cost, skipped=skipped, error=error,
                        prompt_cached=prompt_cached, saved=saved)
        self._outer.advance(rows, cached=cached, failed=failed, tokens=tokens, cost=cost, skipped=skipped,
                            prompt_cached=prompt_cached, saved=saved,
                            error=error)

    def show_pause(self, seconds: float, why: str) -> None:
        super().show_pause(seconds, why)
        if self.pause or self._outer.pause_by is self:  # clears only a pause it showed: another run may be paused
            self._outer.pause, self._outer.pause_by = self.pause, self if self.pause else None

    def refresh(self) -> None:
        self._look()
        self._outer.refresh()

    def close(self, state: str) -> None:
        self.show_pause(0.0, "")
        self._outer.refresh()
