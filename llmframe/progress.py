"""Progress: counters bumped per row, drawn by tqdm.auto (a widget in notebooks, a bar in terminals)."""

from __future__ import annotations

import sys

from . import constants


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
        self.done = 0
        self.cached = 0
        self.failed = 0
        self.tokens = 0
        self._drawn = 0
        self._bar = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                desc=description,
                unit="row",
                mininterval=constants.PROGRESS_REFRESH_SECONDS,
                dynamic_ncols=True,
            )

    def advance(self, rows: int, *, cached: bool = False, failed: bool = False, tokens: int = 0) -> None:
        """Count rows finished; drawing waits for the next refresh."""
        self.done += rows
        if cached:
            self.cached += rows
        if failed:
            self.failed += rows
        self.tokens += tokens

    def refresh(self) -> None:
        """Bring the bar up to date with the counters."""
        if self._bar is None or self.done == self._drawn:
            return
        self._bar.set_postfix(cached=self.cached, failed=self.failed, tokens=self.tokens, refresh=False)
        self._bar.update(self.done - self._drawn)
        self._drawn = self.done

    def close(self, state: str) -> None:
        """Draw the final state: 'done', or why the run ended early."""
        if self._bar is None:
            return
        self.refresh()
        if state != "done":
            self._bar.set_description(f"llmframe ({state})", refresh=False)
        self._bar.close()
        self._bar = None
