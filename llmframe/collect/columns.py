"""The collector: responses fanned back out to rows, as typed Arrow columns in row order, and the report."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import constants
from ..cost import usage
from ..errors import BudgetExceeded, RunAborted
from ..engine.answers import Answers
from . import arrays, vectors
from .arrays import Column
from .report import Report, record, warn_if_mostly_failed

if TYPE_CHECKING:
    from ..engine.outcome import Outcome
    from ..plan.build import Plan


def _per_row(run: Plan, per_key: list) -> np.ndarray:
    """A value per distinct request fanned out to its rows; skipped rows (code -1) get None."""
    # fromiter, not slice assignment: numpy would unpack values that are sequences (lists, models).
    table = np.fromiter(itertools.chain(per_key, [None]), dtype=object, count=len(run.keys) + 1)
    return table[run.row_to_key]  # the extra last slot serves code -1


def _text_column(run: Plan, texts: pa.ChunkedArray, failed: np.ndarray) -> pa.ChunkedArray:
    """The answers' texts fanned out to rows, kept in Arrow from end to end (no Python str per row)."""
    if failed.any():
        texts = pc.if_else(pa.array(failed), pa.scalar(None, pa.large_string()), texts)
    if len(texts) != len(run.row_to_key):  # duplicates or skipped rows (else every row is its own key, in order)
        texts = _take(texts, run.row_to_key)
    return texts


def _take(values: pa.Array | pa.ChunkedArray, positions: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """values at positions; -1 gives a missing value."""
    return values.take(pa.array(positions, mask=positions < 0))


def _error_column(run: Plan, answers: Answers, texts: pa.ChunkedArray, unanswered: str | None) -> pa.Array:
    """Per row: its error, a note on an incomplete answer, or why it was skipped; missing for the rest.

    Built from the few rows that have one, never from a Python object per row.
    """
    messages: dict[str, int] = {}
    per_key = np.full(len(answers) + 1, -1, dtype=np.int32)  # the extra last slot serves skipped rows (-1)
    for j, note in answers.error_notes(texts, unanswered).items():
        per_key[j] = messages.setdefault(note, len(messages))
    rows = per_key[run.row_to_key]
    for i, reason in run.prompts.skipped.items():
        rows[i] = messages.setdefault(f"skipped: {reason}", len(messages))
    return _take(pa.array(list(messages), pa.large_string()), rows)


def new_columns(run: Plan, answers: Answers, pending_note: str | None = None) -> dict[str, Column]:
    """The output's columns, error column last, one value per input row in order.

    pending_note: what the error column says of requests without an answer yet (Outcome.pending_note).
    """
    output = run.output
    texts = answers.text_array()
    failed = answers.failed()
    if run.embedding is not None:
        columns = {output.text: vectors.column(answers.vectors, failed, run.row_to_key,
                                               run.embedding.settings.get("dimensions"))}
    elif output.schema is None:
        columns = {output.text: _text_column(run, texts, failed)}
    else:
        values = answers.parsed if answers.parsed is not None else [None] * len(answers)
        if failed.any():
            values = list(values)
            for j in np.flatnonzero(failed).tolist():
                values[j] = None
        columns = arrays.fields(output.schema, _per_row(run, values), output.prefix, output.mode)
    if output.usage:
        columns.update(usage.row_columns(run, answers, output.usage_columns))
    if run.policy.tools is not None and run.policy.tools.transcript:
        texts_ = [answers.transcripts.get(j) for j in range(len(answers))]
        columns[f"{output.base}_{constants.TRANSCRIPT_SUFFIX}"] = pa.array(_per_row(run, texts_), pa.large_string())
    if output.error_column:
        columns[output.error_column] = _error_column(run, answers, texts, pending_note)
    return columns


def report(run: Plan, outcome: Outcome) -> dict:
    """The run report: plain JSON-serialisable numbers, no secrets."""
    answers = outcome.answers
    weights = np.asarray(run.weights, dtype=np.int64)
    cached, failed = answers.cached, answers.failed()
    pending = ~answers.done if outcome.pending_note else np.zeros(len(answers), dtype=bool)
    failed &= ~pending  # a partial result's unanswered requests are pending, not failed
    sent = answers.done & ~cached & ~usage.not_sent(outcome)
    samples = list(dict.fromkeys(answers.errors[j] for j in sorted(answers.errors)))[: constants.ERROR_SAMPLES]
    counters = outcome.counters
    return {
        "model": run.model,
        "rows": len(run.prompts),
        "cached": int(weights[cached].sum()),
        "requests_sent": int(sent.sum()) - counters.failed_to_connect,
        "requests_failed_to_connect": counters.failed_to_connect,  # failed, and never reached a server
        "deduplicated": int(weights.sum()) - len(run.keys),
        "failed": int(weights[failed].sum()),
        "skipped": len(run.prompts.skipped),
        **({"pending": int(weights[pending].sum())} if outcome.pending_note else {}),
        "input_tokens": int(answers.input_tokens[sent].sum()),
        "output_tokens": int(answers.output_tokens[sent].sum()),
        "seconds": round(outcome.seconds, 3),
        "attempts": counters.attempts,
        "retries": counters.retries,
        "rate_limited": counters.rate_limited,
        "invalid_answers": counters.invalid,
        **({"tool_calls": counters.tool_calls, "tool_errors": counters.tool_errors} if run.policy.tools else {}),
        "concurrent_duplicates": counters.duplicates,
        "finish_reasons": answers.finish_counts(weights),
        "errors": samples,
        "mode": "batch" if run.batch is not None else "online",
        "batch_job": outcome.job_id,  # llmframe.batches() lists it
        **usage.totals(run, outcome),
        **_packed(run, counters),
        **({constants.CALLBACK_ERRORS: list(outcome.callback_errors)} if outcome.callback_errors else {}),
    }


def _packed(run: Plan, counters) -> dict:
    """rows_per_request's entries: requests sent (packs and single rows), and rows asked again alone."""
    if run.packing is None:
        return {}
    return {"requests_sent": counters.packed_requests + counters.single_requests,
            "rows_per_request": {"size": run.packing.size, "packed_requests": counters.packed_requests,
                                 "rows_asked_alone": counters.asked_alone}}


def collect(run: Plan, outcome: Outcome) -> tuple[dict[str, Column], Report]:
    """The new columns (error column last, in row order) and the run report; a face turns them into its frame."""
    made = Report(report(run, outcome))
    columns = new_columns(run, outcome.answers, outcome.pending_note)
    if run.memo is not None:  # the rows the run memo answered, put back in their places (llmframe/memo)
        columns, made = run.memo.stitch(run, outcome, columns, made)
    return columns, made if outcome.pending_note else record(made)


def raise_if_asked(run: Plan, report_: dict, result: Any) -> None:
    """BudgetExceeded when max_cost stopped the run; with errors="raise", RunAborted when any row failed;
    else a RuntimeWarning when most rows failed.

    Both carry the report and the result (finished answers included), which are also in the cache. A
    partial result (rows still pending) neither raises nor warns: it is a look at a run, not its end.
    """
    if report_.get("pending"):
        return
    budget = report_.get("budget")
    if budget and budget["rows_not_sent"]:
        raise BudgetExceeded(
            f"max_cost={budget['max_cost']} reached: {budget['rows_not_sent']} of {report_['rows']} rows were not "
            f"sent (spent about ${budget['spent']:.4g}). Finished answers are cached and in .result; raise "
            "max_cost and re-run to send the rest",
            report_, result,
        )
    if run.output.errors == "raise" and report_["failed"]:
        first = report_["errors"][0] if report_["errors"] else "unknown error"
        raise RunAborted(
            f"{report_['failed']} of {report_['rows']} rows failed (first error: {first}); "
            "the answers that succeeded are cached, so a re-run sends only the failed rows",
            report_, result,
        )
    warn_if_mostly_failed(report_)


_REPORT_TOTALS = ("rows", "cached", "requests_sent", "deduplicated", "failed", "skipped", "input_tokens",
                  "output_tokens", "attempts", "retries", "rate_limited", "invalid_answers", "concurrent_duplicates",
                  "requests_failed_to_connect")


def merge_reports(reports: Sequence[dict]) -> dict:
    """One report for many runs of the same call (Ray batches): totals summed, error samples pooled.

    "seconds" stays the sum of the runs' own times; whoever knows the wall time of the whole job replaces it.
    """
    merged: dict[str, Any] = {"model": reports[0]["model"] if reports else None, "runs": len(reports)}
    for name in (*_REPORT_TOTALS, "seconds"):
        merged[name] = sum(r.get(name, 0) for r in reports)
    finish: dict[str, int] = {}
    for r in reports:
        for reason, n in r.get("finish_reasons", {}).items():
            finish[reason] = finish.get(reason, 0) + n
    merged["finish_reasons"] = finish
    merged["errors"] = list(dict.fromkeys(e for r in reports for e in r.get("errors", ())))[: constants.ERROR_SAMPLES]
    merged["seconds"] = round(merged["seconds"], 3)
    return merged
