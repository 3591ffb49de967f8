"""Usage and cost: what each request was billed, per-row usage columns (usage=True), and the run report's
totals, paid versus saved."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .. import constants
from ..collect import arrays
from ..engine.answers import Answers

if TYPE_CHECKING:
    from ..engine.outcome import Outcome
    from ..plan.build import Plan


def per_key(answers: Answers) -> dict[str, np.ndarray]:
    """The usage of each distinct request as arrays (views of the answers' own columns)."""
    return {"input": answers.input_tokens, "output": answers.output_tokens,
            "cached_input": answers.cached_input_tokens, "cache_write": answers.cache_write_tokens,
            "latency": answers.latency,
            "reasoning": answers.reasoning_tokens,
            "from_cache": answers.cached, "ok": ~answers.failed()}


def _key_costs(run: Plan, usage: dict[str, np.ndarray]) -> np.ndarray | None:
    """USD per distinct request at today's price (cached answers too: what they would cost now)."""
    if run.pricer is None:
        return None
    return run.pricer.costs(usage["input"], usage["output"], usage["cached_input"], usage["cache_write"])


def _fan(run: Plan, per_key: np.ndarray, fill) -> np.ndarray:
    """Per-key values out to rows; skipped rows (code -1) get fill."""
    table = np.append(per_key.astype(object if fill is None else per_key.dtype, copy=False), fill)
    return table[run.row_to_key]


def row_columns(run: Plan, answers: Answers, names: list[str]) -> dict[str, pa.Array]:
    """The usage=True columns: input, output, prompt-cached and cache-write input tokens, reasoning tokens, cost (USD),
    cached, latency (s), finish reason.

    A row is "cached" when no request was sent for it in this run: its answer came from the cache or
    from an identical row. Its cost is what the answer would cost if paid now; its latency is the one
    recorded when it was paid. Skipped rows, and failed rows that were billed nothing, have missing values;
    a failed row that was billed (answers rejected as invalid or empty) has its tokens and cost.
    """
    usage = per_key(answers)
    rows = len(run.row_to_key)
    ok = _fan(run, usage["ok"], False)
    billed = _fan(run, usage["ok"] | (usage["input"] > 0) | (usage["output"] > 0), False)
    first = np.zeros(rows, dtype=bool)
    first[run.first_row] = True
    cached = _fan(run, usage["from_cache"], False) | ~first
    costs = _key_costs(run, usage)
    finish = _fan(run, np.array(answers.finish_names, dtype=object)[answers.finish], None)
    masked = arrays.masked
    values = {
        "input_tokens": masked(_fan(run, usage["input"], 0).astype(np.int64), billed),
        "output_tokens": masked(_fan(run, usage["output"], 0).astype(np.int64), billed),
        "cached_input_tokens": masked(_fan(run, usage["cached_input"], 0).astype(np.int64), billed),
        "cache_write_tokens": masked(_fan(run, usage["cache_write"], 0).astype(np.int64), billed),
        "reasoning_tokens": masked(_fan(run, usage["reasoning"], 0).astype(np.int64), billed),
        "cost": masked(_fan(run, costs, np.nan) if costs is not None else np.full(rows, np.nan), billed),
        "cached": masked(cached, billed),
        "latency_s": masked(_fan(run, usage["latency"], np.nan), ok),
        "finish_reason": arrays.strings(finish, ok),
    }
    return dict(zip(names, (values[suffix] for suffix in constants.USAGE_SUFFIXES)))


def totals(run: Plan, outcome: Outcome) -> dict:
    """Report entries: cost paid in this run, cost saved by the cache (and de-duplication), the price used."""
    answers = outcome.answers
    usage = per_key(answers)
    costs = _key_costs(run, usage)
    sent = ~usage["from_cache"]  # failed requests too: what their rejected answers were billed
    out: dict = {"cached_input_tokens": int(usage["cached_input"][sent].sum())}
    if usage["cache_write"][sent].any():  # Anthropic's prompt-cache writes (of the input, billed at their own rate)
        out["cache_write_tokens"] = int(usage["cache_write"][sent].sum())
    if usage["reasoning"].any():  # a reasoning model's run (its thinking is in output_tokens, billed as output)
        out["reasoning_tokens"] = int(usage["reasoning"][sent].sum())
    if run.pricer is None:  # no cost was asked for (usage=, prices=, max_cost=): the report has none
        return out
    if costs is None:
        out.update(cost=None, cost_saved_by_cache=None, cost_without_cache=None)
    else:
        paid = float(costs[sent].sum())
        full = float((costs * run.weights).sum())
        out.update(cost=round(paid, 8), cost_saved_by_cache=round(full - paid, 8), cost_without_cache=round(full, 8))
        out["cost_saved_by_prompt_cache"] = _prompt_cache_saving(run, usage, costs, sent)
    out["price"] = run.pricer.describe()
    budget = outcome.budget
    if budget is not None:
        out["budget"] = {**budget.summary(), "rows_not_sent": int(run.weights[not_sent(outcome)].sum())}
    return out


def _prompt_cache_saving(run: Plan, usage: dict[str, np.ndarray], costs: np.ndarray, sent: np.ndarray) -> float:
    """USD the provider's prompt cache took off this run's requests: their input priced in full, less what was paid
    (negative where writing the cache cost more than reading it saved)."""
    if not usage["cached_input"][sent].any() and not usage["cache_write"][sent].any():
        return 0.0
    uncached = run.pricer.costs(usage["input"][sent], usage["output"][sent])
    return round(float(uncached.sum() - costs[sent].sum()), 8)


def not_sent(outcome: Outcome) -> np.ndarray:
    """A mask over distinct requests: True for those the budget kept from being sent."""
    answers = outcome.answers
    mask = np.zeros(len(answers), dtype=bool)
    if outcome.counters.not_sent:
        prefix = constants.BUDGET_NOT_SENT.split("{")[0]
        mask[[j for j, error in answers.errors.items() if error.startswith(prefix)]] = True
    return mask
