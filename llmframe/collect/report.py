"""The run report: a plain dict of JSON numbers (out.attrs["llmframe"]) that draws itself as a small table in notebooks.

And the warning a run gives when most of its rows failed, which a script would otherwise not notice.
"""

from __future__ import annotations

import contextlib
import contextvars
import html
import numbers
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from .. import constants
from ..cost.money import dollars

# Words for the keys llmframe writes; any other key (added by a newer feature) is shown under its own name.
_LABELS = {
    "model": "model",
    "rows": "rows",
    "cached": "from cache",
    "requests_sent": "requests sent",
    "requests_failed_to_connect": "requests that could not connect",
    "deduplicated": "de-duplicated rows",
    "failed": "failed rows",
    "skipped": "skipped rows",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "seconds": "seconds",
    "attempts": "HTTP attempts",
    "retries": "retries",
    "rate_limited": "rate limited (429)",
    "invalid_answers": "invalid answers",
    "concurrent_duplicates": "paid twice (concurrent runs)",
    "finish_reasons": "finish reasons",
    "errors": "errors",
    "cached_input_tokens": "input tokens from the provider's prompt cache",
    "cache_write_tokens": "input tokens written to the provider's prompt cache (billed at its cache-write rate)",
    "cost": "cost paid (USD)",
    "cost_saved_by_cache": "saved by the cache (USD)",
    "cost_without_cache": "cost without the cache (USD)",
    "cost_saved_by_prompt_cache": "saved by the provider's prompt cache (USD)",
    "price": "price (USD per million tokens)",
    "budget": "budget (max_cost)",
    "run_id": "run id",
}
# shown as $0.0123, not 0.0123 or 1.2e-05
_DOLLARS = {"cost", "cost_saved_by_cache", "cost_without_cache", "cost_saved_by_prompt_cache"}


class Report(dict):
    """The run report: a dict (so JSON, equality and out.attrs work as before) with an HTML view."""

    def _repr_html_(self) -> str:
        """A table of every key present, two to a line, headed by a one-line summary."""
        cells = [f'<th style="text-align:left">{html.escape(_label(key))}</th>'
                 f'<td style="text-align:left;vertical-align:top">{_cell(key, value)}</td>' for key, value in self.items()]
        # Two key/value pairs a line keeps the table short enough to read at a glance.
        rows = "".join(f"<tr>{''.join(cells[i:i + 2])}</tr>" for i in range(0, len(cells), 2))
        return (f'<details open class="llmframe-report"><summary><b>llmframe run</b>: {html.escape(self.headline())}'
                f"</summary><table>{rows}</table></details>")

    def __str__(self) -> str:
        """What print() shows in a terminal: the headline, then one key a line (repr stays the dict)."""
        labels = {key: _label(key) for key in self}
        width = max(map(len, labels.values()), default=0)
        lines = [f"llmframe run: {self.headline()}"]
        for key, value in self.items():
            if isinstance(value, (list, tuple)) and value:
                lines.append(f"  {labels[key]}:")
                lines += [f"    - {_cut(str(v))}" for v in value]
            else:
                lines.append(f"  {labels[key]:<{width}}  {_text(key, value)}")
        return "\n".join(lines)

    def headline(self) -> str:
        """One line: rows, how they were answered, failures, time."""
        parts = []
        if "rows" in self:
            parts.append(f"{_number(self['rows'])} rows")
        for key, words in (("requests_sent", "sent"), ("cached", "from cache"), ("failed", "failed"),
                           ("requests_failed_to_connect", "could not connect"), ("skipped", "skipped")):
            if self.get(key):
                parts.append(f"{_number(self[key])} {words}")
        if isinstance(self.get("seconds"), numbers.Real):
            parts.append(f"{self['seconds']:.2f} s")
        return ", ".join(parts) or "no rows"


def _number(value: numbers.Real) -> str:
    """Thousands separated integers; floats to four significant digits."""
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    return f"{float(value):,.4g}"


def _label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " "))


def _text(key: str, value: Any) -> str:
    """One value as plain text: dollars, numbers formatted, dicts as key: value pairs, lists comma-separated."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if key in _DOLLARS and isinstance(value, numbers.Real):
        return dollars(float(value))
    if isinstance(value, numbers.Real):
        return _number(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cut(str(v)) for v in value) or "none"
    return _cut(str(value))


def _cell(key: str, value: Any) -> str:
    """One value as HTML, escaped; lists one item per line."""
    if isinstance(value, (list, tuple)) and value:
        items = "".join(f"<li>{html.escape(_cut(str(v)))}</li>" for v in value)
        return f'<ul style="margin:0;padding-left:1.2em">{items}</ul>'
    return html.escape(_text(key, value))


def _cut(text: str) -> str:
    """A long text (an error message) cut to a readable length."""
    limit = constants.REPORT_TEXT_CHARS
    return text if len(text) <= limit else text[: limit - 1] + "…"


_last: list[Report] = []  # the latest run's report, for last_report(): one slot, replaced by each run


def record(report: Report) -> Report:
    """Make this the report last_report() gives."""
    _last[:] = [report]
    return report


def last_report() -> Report | None:
    """The report of the latest run in this process, on any face (pandas, Polars, a lazy Polars collect)."""
    return _last[0] if _last else None


# False while a caller that runs many generate calls (a sweep, `llmframe run`, a Ray actor) warns once itself.
_WARN_EACH_RUN = contextvars.ContextVar("llmframe_warn_each_run", default=True)


@contextlib.contextmanager
def one_warning_for_all_runs() -> Iterator[None]:
    """Runs inside do not warn about their failed rows: the caller warns once for all of them."""
    token = _WARN_EACH_RUN.set(False)
    try:
        yield
    finally:
        _WARN_EACH_RUN.reset(token)


def mostly_failed(report: dict) -> bool:
    """True when more than FAILED_ROWS_WARNING_SHARE of the rows that had a prompt failed."""
    asked = report.get("rows", 0) - report.get("skipped", 0)
    return asked > 0 and report.get("failed", 0) > constants.FAILED_ROWS_WARNING_SHARE * asked


def describe_failures(report: dict) -> str:
    """"40 of 50 rows failed (first error: ...)", and a hint when requests never reached the server."""
    asked = report.get("rows", 0) - report.get("skipped", 0)
    first = report["errors"][0] if report.get("errors") else "unknown error"
    text = f"{report.get('failed', 0):,} of {asked:,} rows failed (first error: {first})"
    unreached = report.get("requests_failed_to_connect")
    if unreached:
        text += f"; {unreached:,} requests never reached the server: check base_url, and that the server is up"
    return text


def warn_if_mostly_failed(reports: dict | Sequence[tuple[str, dict]]) -> None:
    """One RuntimeWarning when most rows failed: of one run (its report), or of any of the (name, report) runs."""
    if not _WARN_EACH_RUN.get():
        return
    if isinstance(reports, dict):
        if not mostly_failed(reports):
            return
        message = describe_failures(reports)
    else:
        failing = [(name, report) for name, report in reports if mostly_failed(report)]
        if not failing:
            return
        shown = "; ".join(f"{name}: {describe_failures(report)}" for name, report in failing[:3])
        more = f"; and {len(failing) - 3} more" if len(failing) > 3 else ""
        message = f"most rows failed in {len(failing)} of {len(reports)} runs: {shown}{more}"
    warnings.warn(f"{message}. The answers that succeeded are cached: fix the cause and re-run, and only the "
                  "failed rows are sent again", RuntimeWarning, stacklevel=_callers_level())


def _callers_level() -> int:
    """The stacklevel of the first frame outside llmframe, so the warning points at the user's own line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "llmframe":
        frame, level = frame.f_back, level + 1
    return level
