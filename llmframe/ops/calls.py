"""The one generate-like entry every operator's calls go through: a stage's rows, template and output schema
planned exactly as generate plans them (so the cache keys are generate's), run on the engine under one max_cost
budget, its report kept; or, on a dry run, only estimated. Vectors come from embed's plan the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import constants
from ..collect import columns as collector
from ..collect import vectors as vector_columns
from ..collect.arrays import Column
from ..cost.budget import Budget
from ..cost.estimate import Estimate
from ..cost.meter import CostMeter
from ..cost.money import dollars
from ..engine import run as engine
from ..engine.loop import run_sync
from ..engine.progress import for_run, should_show
from ..errors import BudgetExceeded, ConfigError
from ..options import PASSED_ON, check_names
from ..plan import build
from ..plan import embed as embedding
from ..plan.rows import Rows
from ..plan.template import TemplateLike
from ..providers import resolve
from ..providers.base import Provider

# generate's options an operator passes on; output= and its naming are the operator's own (agg takes output=).
OPERATOR_OPTIONS = (PASSED_ON | {"errors"}) - {"prefix", "output_mode", "dtype_backend"}
EMBED_PASSED = ("cache", "cache_dir", "max_concurrency", "rpm", "tpm", "max_attempts", "max_failures_in_a_row",
                "timeout", "max_wait", "progress", "prices")


@dataclass
class OperatorEstimate:
    """What an operator would send and cost: model calls (a range where later calls depend on earlier answers),
    the naive method's calls, the cost range, and each stage's own Estimate. Nothing was sent."""

    operator: str
    calls: tuple[int, int]
    naive_calls: int
    cost: tuple[float, float] | None
    stages: list[tuple[str, Estimate]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        calls = f"{self.calls[0]:,}" if self.calls[0] == self.calls[1] else f"{self.calls[0]:,} to {self.calls[1]:,}"
        cost = "unknown (no price: pass prices=)" if self.cost is None else \
            f"{dollars(self.cost[0])} to {dollars(self.cost[1])}"
        lines = [f"Estimate of {self.operator}: nothing was sent",
                 f"  model calls {calls} (naive method: {self.naive_calls:,}); cost {cost}"]
        lines += [f"  {name}: {e.uncached_requests:,} requests to send of {e.requests:,}" for name, e in self.stages]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


class Caller:
    """model= and generate's options for every call of one operator, one budget over them, and their reports."""

    def __init__(self, operator: str, model: str | Provider, options: dict, *, dry_run: bool = False,
                 reading: dict | None = None):
        check_names(options, OPERATOR_OPTIONS)
        for name in ("mode", "errors"):
            if name in options and not isinstance(options[name], str):
                raise ConfigError(f"{name}= must be a string, got {options[name]!r}")
        self.operator, self.model, self.options, self.dry_run = operator, model, dict(options), dry_run
        self.reading = dict(reading or {})  # how the face's own rows are read (a Series': positional_column=)
        self.target = resolve(model)
        max_cost = options.get("max_cost")
        self.budget = Budget(float(max_cost)) if max_cost is not None and not dry_run else None
        self.reports: list[tuple[str, dict]] = []
        self._embeddings: set[str] = set()  # stages that made vectors: no model calls
        self.estimates: list[tuple[str, Estimate]] = []
        self._online: set[int] = set()  # the plans (ids) of stages that run online whatever mode= says

    def plan(self, rows: Rows, template: TemplateLike, output: Any, *, system: str | None = None,
             online: bool = False, max_tokens: int | None = None, memo: bool = False, own: bool = False
             ) -> build.Plan:
        """The stage's plan, as generate(template, output=output, system=...) over these rows would make it.

        memo: answer what the run memo holds of the call from it, as generate does (llmframe.memo): the plan then
        holds only the other rows, so a stage that reads the plan's prompts afterwards (top_k's) leaves it off.
        own: the rows are the face's own (read as the face says: reading=), not rows the operator made."""
        given = {**self.options, **(self.reading if own else {})}
        if system is not None:
            users = given.get("system")
            given["system"] = system if not users else f"{system}\n\n{users}"
        if max_tokens is not None and given.get("max_tokens") is None:
            given["max_tokens"] = max_tokens
        priced_online = online and given.get("mode") == "batch"  # its dry run prices it at the online rate
        if online or self.dry_run:
            given["mode"] = constants.BATCH_MODES[0]  # a stage that waits on the one before runs online
        if self.dry_run:
            given["progress"] = False
            if not isinstance(self.model, Provider):
                given["api_key"] = given.get("api_key") or constants.ESTIMATE_API_KEY
        if memo and not self.dry_run:
            from ..memo import calls as run_memo

            return run_memo.plan(rows, template, target=self.target, output=output, output_frame_columns=(), **given)
        made = build.plan(rows, template, target=self.target, output=output, output_frame_columns=(), **given)
        if priced_online:
            self._online.add(id(made))
        return made

    def run(self, stage: str, plan: build.Plan) -> dict[str, Column] | None:
        """Run the plan now (None on a dry run, which estimates it instead); BudgetExceeded when max_cost ran out."""
        if self.dry_run:
            batch = self.options.get("mode") == "batch" and id(plan) not in self._online
            self.estimates.append((stage, engine.estimate(plan, mode="batch" if batch else "online")))
            return None
        bar = for_run(len(plan.prompts), show=should_show(plan.progress), description=f"{self.operator} {stage}: "
                      f"{plan.model}")  # which of the operator's calls this bar counts
        outcome = run_sync(engine.start(plan, meter=CostMeter.for_plan(plan, self.budget), progress=bar))
        columns, report = collector.collect(plan, outcome)
        self.reports.append((stage, report))
        budget = report.get("budget")
        if budget and budget["rows_not_sent"]:
            raise BudgetExceeded(f"max_cost={budget['max_cost']} reached in {self.operator}'s {stage} stage: "
                                 f"{budget['rows_not_sent']} calls were not sent; the finished answers are cached, "
                                 "so raising max_cost and re-running sends only the rest", self.report(), None)
        collector.raise_if_asked(plan, report, None)
        return columns

    def vectors(self, stage: str, rows: Rows, template: str, model: str | Provider, options: dict) -> np.ndarray | None:
        """Each row's embedding (NaN rows where one failed), as embed makes and caches them; None on a dry run."""
        given = {k: self.options[k] for k in EMBED_PASSED if k in self.options}
        target = resolve(model)
        if target.provider == self.target.provider:  # the same provider: the same endpoint and key, unless told
            given.update({k: self.options[k] for k in ("api_key", "base_url") if self.options.get(k) is not None})
        given.update(options)
        if self.budget is not None:  # the vectors are paid from the operator's one budget too
            given.setdefault("max_cost", self.budget.max_cost)
        if self.dry_run:
            given.update(progress=False, api_key=given.get("api_key") or constants.ESTIMATE_API_KEY)
        plan = embedding.embed_plan(rows, template, target=target, **given)
        self._embeddings.add(stage)
        columns = self.run(stage, plan)
        return None if columns is None else vector_columns.to_matrix(columns[plan.output.text])

    def report(self, **extra: Any) -> dict:
        """One report for the operator: the stages' totals summed, each stage's own, and the calls it used."""
        merged = collector.merge_reports([r for _, r in self.reports])
        merged.pop("runs", None)
        merged["model"] = self.target.name
        sent = sum(r["requests_sent"] for _, r in self.reports)
        calls = sum(r["rows"] - r["skipped"] for name, r in self.reports if name not in self._embeddings)
        stages: dict[str, dict] = {}
        for name, r in self.reports:  # a stage run many times (top_k's comparison rounds) is summed
            into = stages.setdefault(name, dict.fromkeys(("runs", "rows", "cached", "requests_sent", "failed"), 0))
            into["runs"] += 1
            for k in ("rows", "cached", "requests_sent", "failed"):
                into[k] += r[k]
            if r.get("cost") is not None:
                into["cost"] = into.get("cost", 0.0) + r["cost"]
        costs = [r.get("cost") for _, r in self.reports]
        modes = {r.get("mode") for _, r in self.reports} - {None}
        merged["mode"] = "batch" if "batch" in modes else "online"
        merged["batch_jobs"] = [r["batch_job"] for _, r in self.reports if r.get("batch_job")]
        merged["memo_rows"] = sum(r.get("memo_rows", 0) for _, r in self.reports)  # answered by the run memo
        out = {"operator": self.operator, **merged, "calls": calls, "requests_sent": sent, "stages": stages, **extra}
        if any(c is not None for c in costs):
            out["cost"] = sum(c or 0.0 for c in costs)
        return out

    def estimate(self, calls: tuple[int, int], naive: int, notes: list[str] | None = None,
                 scale: Callable[[str], float] | None = None) -> OperatorEstimate:
        """The dry run's OperatorEstimate from the stages estimated; scale: a stage's cost multiplier (a sample)."""
        costs = [(name, e.cost, scale(name) if scale else 1.0) for name, e in self.estimates]
        cost = None if any(c is None for _, c, _ in costs) else (
            sum(c[0] * f for _, c, f in costs), sum(c[1] * f for _, c, f in costs))
        return OperatorEstimate(self.operator, calls, naive, cost, list(self.estimates), list(notes or []))


def user_texts(plan: build.Plan, positions: np.ndarray) -> list[str]:
    """The text of the last user message of the plan's rows at these positions (None for a skipped row)."""
    out: list[str] = []
    skipped = plan.prompts.skipped
    for i in positions.tolist():
        if i in skipped:
            out.append(None)
            continue
        users = [m for m in plan.prompts.messages(i) if m.get("role") == "user"]
        content = users[-1]["content"] if users else ""
        out.append(content if isinstance(content, str) else str(content))
    return out
