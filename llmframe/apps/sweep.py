"""Evaluation sweeps: templates x models x parameter settings x repeats, run concurrently, scored, summarised."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..faces.frames import rows_of, to_frame
from .. import constants
from ..faces import planning
from ..plan.build import Plan
from ..cost.budget import Budget, check_max_cost
from ..options import BY_NAME
from ..cost.meter import CostMeter
from ..errors import BudgetExceeded, ConfigError
from ..engine.answers import Answers
from ..engine.loop import run_sync
from ..engine.outcome import Counters, Outcome
from ..engine.progress import Progress, should_show
from ..engine import run as engine
from ..collect.report import one_warning_for_all_runs, warn_if_mostly_failed
from ..plan.request import KEYWORD_PARAMS, Response, canonical_json, integer_at_least
from ..scorers import Scorer, as_scorer

def _templates(template: Any) -> dict[str, Any]:
    """{name: template}: a dict as given, a list named t0, t1, ..., one template named t0."""
    if isinstance(template, Mapping):
        if not template or not all(isinstance(k, str) for k in template):
            raise ConfigError("a dict of templates needs string names: {'short': '...', 'long': '...'}")
        return dict(template)
    if isinstance(template, (list, tuple)) and template and not all(isinstance(m, dict) for m in template):
        return {f"t{i}": t for i, t in enumerate(template)}
    return {"t0": template}  # a string, a function, or one message list


def _grid(params: Mapping | None) -> list[dict]:
    """Every combination of the swept parameters' values."""
    if not params:
        return [{}]
    if not isinstance(params, Mapping) or not all(isinstance(v, (list, tuple)) and v for v in params.values()):
        raise ConfigError('params must map a parameter to a non-empty list of values, e.g. {"temperature": [0, 0.7]}')
    names = list(params)
    return [dict(zip(names, values)) for values in itertools.product(*(params[n] for n in names))]


@dataclass
class _Config:
    template: str
    model: str
    setting: dict
    repeat: int


class _SharedProgress(Progress):
    """One display for every run of a sweep: each run's close() counts down, the last one closes it."""

    def __init__(self, total: int, *, show: bool, runs: int):
        super().__init__(total, show=show, description="sweep")
        self._open = runs

    def close(self, state: str) -> None:
        self._open -= 1
        if self._open <= 0 or state not in ("done",) and not state.endswith("failed"):
            super().close(state)


def _options(config: _Config, options: dict, repeats: int) -> dict:
    """generate's options for one configuration: swept keywords set, others merged into params=."""
    out = {**options}
    extra = dict(out.pop("params", None) or {})
    for name, value in config.setting.items():
        if name in KEYWORD_PARAMS:
            out[name] = value
        else:
            extra[name] = value
    if extra:
        out["params"] = extra
    if repeats > 1:  # each repeat is its own request (its own cache key), with its own seed
        out["seed"] = int(out.get("seed") or 0) + config.repeat
    return out


def sweep(frame: pd.DataFrame, template: Any, *, models: Any, params: Mapping | None, repeats: int, output: str,
          score: Any, max_cost: float | None, options: dict, dry_run: bool = False) -> SweepResult | pd.DataFrame:
    """Plan every configuration (all checked before anything is sent), run them concurrently, build the table."""
    models = [models] if isinstance(models, str) else list(models or [])
    if not models or not all(isinstance(m, str) for m in models):
        raise ConfigError('models must be a "provider:model" string or a list of them')
    if not isinstance(output, str) or not output:
        raise ConfigError("a sweep's output must be a column name")
    integer_at_least("repeats", repeats, 1)
    max_cost = BY_NAME["max_cost"].check("max_cost", max_cost)  # the whole sweep's cap, checked as generate's is
    for name in ("usage", "errors", "max_cost"):
        if name in options:
            raise ConfigError(f"{name}= is set by sweep itself; leave it out")
    scorer = as_scorer(score)
    templates, grid = _templates(template), _grid(params)
    clash = sorted({*constants.SWEEP_CONFIG_COLUMNS, *(params or {})} & set(frame.columns))
    if clash:
        raise ConfigError(f"the frame's column(s) {clash} would clash with the sweep's configuration columns; "
                          "rename them first")
    if scorer is not None:
        scorer.check_columns(frame.columns)
    configs = [_Config(t, m, s, r) for t in templates for m in models for s in grid for r in range(repeats)]
    if dry_run:  # nothing is sent, so no key is needed (as for estimate): a placeholder lets planning check the rest
        options = {**options, "api_key": options.get("api_key") or constants.ESTIMATE_API_KEY}
    plans = [planning.plan(rows_of(frame), templates[c.template], model=c.model, output=output, errors="column",
                           usage=True, **_options(c, {"progress": False, **options}, repeats)) for c in configs]
    if dry_run:
        return _estimates(configs, plans, grid)
    budget = None
    if max_cost is not None:
        budget = Budget([check_max_cost(max_cost, plan.pricer) for plan in plans][0])  # each model has a price
    outcomes = _execute(plans, budget, show=should_show(options.get("progress")))
    frames, stopped = [], False
    with one_warning_for_all_runs():  # one warning for the sweep, below, not one per configuration
        for config, plan, outcome in zip(configs, plans, outcomes):
            try:
                out = to_frame(frame, plan, outcome)
            except BudgetExceeded as exc:
                out, stopped = exc.result, True
            frames.append(_label(out, config, grid))
    table = pd.concat(frames) if frames else frame.iloc[:0]
    result = SweepResult(table, output=output, parameters=list(grid[0]), scorer=scorer,
                         reports=[f.attrs.get(constants.REPORT_ATTR) for f in frames])
    result.score()
    if stopped:
        raise BudgetExceeded(
            f"max_cost={max_cost} reached: the sweep stopped before its estimated spend would exceed it (spent about "
            f"${budget.spent:.4g}). Finished answers are cached and in .result; raise max_cost and re-run",
            {"budget": budget.summary()}, result,
        )
    warn_if_mostly_failed([(_name(config, grid), report) for config, report in zip(configs, result.reports)])
    return result


def _estimates(configs: list[_Config], plans: list[Plan], grid: list[dict]) -> pd.DataFrame:
    """One estimate per configuration (nothing sent); attrs["llmframe"] has the sweep's totals."""
    rows = []
    for config, plan in zip(configs, plans):
        est = engine.estimate(plan)
        row = {"template": config.template, "model": config.model, **{n: config.setting.get(n) for n in grid[0]},
               "repeat": config.repeat, "rows": est.rows, "uncached_requests": est.uncached_requests,
               "input_tokens": est.input_tokens, "output_tokens_low": est.output_tokens[0],
               "output_tokens_high": est.output_tokens[1],
               "cost_low": est.cost[0] if est.cost else math.nan, "cost_high": est.cost[1] if est.cost else math.nan}
        rows.append(row)
    table = pd.DataFrame(rows)
    priced = table["cost_low"].notna().all()
    table.attrs[constants.REPORT_ATTR] = {
        "uncached_requests": int(table["uncached_requests"].sum()),
        "cost": (float(table["cost_low"].sum()), float(table["cost_high"].sum())) if priced else None,
    }
    return table


def _execute(plans: list[Plan], budget: Budget | None, *, show: bool) -> list[Outcome]:
    """Every run at once on the engine's loop, each under its own provider's limits; one progress display,
    and one max_cost budget that every run's meter draws on.

    A run that aborts (a bad key, the circuit breaker) fails its own rows, never the other runs'.
    """
    progress = _SharedProgress(sum(len(p.prompts) for p in plans), show=show, runs=len(plans))
    meters = [CostMeter.for_plan(plan, budget) for plan in plans]
    runs = [engine.start(plan, meter=meter, progress=progress) for plan, meter in zip(plans, meters)]

    async def one(run) -> Outcome | tuple[Exception, float]:
        began = time.perf_counter()
        try:
            return await run()
        except Exception as exc:  # this run's own failure, with how long it ran
            return exc, time.perf_counter() - began

    async def together() -> list:
        return await asyncio.gather(*(one(run) for run in runs), return_exceptions=True)

    outcomes = []
    for plan, meter, outcome in zip(plans, meters, run_sync(together)):
        if isinstance(outcome, BaseException):
            raise outcome  # a cancellation or an interrupt ends the sweep
        if isinstance(outcome, tuple):
            error, seconds = outcome
            failure = Response.failure(f"{type(error).__name__}: {error}")
            outcome = Outcome(Answers.of([failure] * len(plan.keys)), Counters(), seconds, budget=meter.budget)
        outcomes.append(outcome)
    return outcomes


def _name(config: _Config, grid: list[dict]) -> str:
    """A configuration in words, for a warning: model, template, swept values, repeat."""
    values = "".join(f", {name}={config.setting.get(name)!r}" for name in grid[0])
    return f"{config.model} (template {config.template}{values}, repeat {config.repeat})"


def _label(out: pd.DataFrame, config: _Config, grid: list[dict]) -> pd.DataFrame:
    """One configuration's frame with its configuration columns."""
    labels = {"model": config.model, "template": config.template}
    # Lists and dicts (stop=[...], a response_format) are labelled by their JSON, so summary() can group them.
    labels.update({name: canonical_json(v) if isinstance(v, (list, tuple, dict)) else v
                   for name, v in ((n, config.setting.get(n)) for n in grid[0])})
    labels["repeat"] = config.repeat
    return out.assign(**labels)


class SweepResult:
    """A sweep's answers: .table (long: one row per input row and configuration), .summary(), .plot()."""

    def __init__(self, table: pd.DataFrame, *, output: str, parameters: list[str], scorer: Scorer | None = None,
                 reports: list | None = None):
        self.table = table
        self.output = output
        self.parameters = parameters
        self.scorer = scorer
        self.reports = reports or []  # each configuration's run report

    @property
    def config_columns(self) -> list[str]:
        """The columns that identify a configuration (repeats are pooled in summary())."""
        return ["template", "model", *self.parameters]

    def score(self) -> None:
        """Fill table["score"]: the scorer's value for every answered row, NaN for rows without an answer."""
        if self.scorer is None:
            return
        answered = self.table[self.output].notna().to_numpy()
        scores = np.full(len(self.table), np.nan)
        part = self.table[answered]
        if len(part):
            scores[answered] = self.scorer(part, self.output).to_numpy(dtype=np.float64, na_value=np.nan)
        self.table = self.table.assign(score=scores)

    def summary(self) -> pd.DataFrame:
        """One row per configuration: mean score with its confidence interval, n, failures, tokens, cost, latency.

        score_mean is over answered rows; the interval is mean +- 1.96 standard errors (normal
        approximation, sample standard deviation; kept within 0..1 when every score is). cost is what the answers cost at today's prices,
        cached ones included; cost_paid is what this call paid. Latency percentiles are numpy's
        (linear interpolation) over answered rows.
        """
        base = self.output
        table = self.table
        rows = []
        for key, group in table.groupby(self.config_columns, dropna=False, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            scores = group["score"].dropna().to_numpy(dtype=np.float64) if "score" in group else np.array([])
            latency = group[f"{base}_latency_s"].dropna().to_numpy(dtype=np.float64)
            cost = group[f"{base}_cost"]
            cached = group[f"{base}_cached"].fillna(True).astype(bool)
            row = dict(zip(self.config_columns, key))
            row.update(_mean_interval(scores))
            row.update(
                n=len(group),
                failures=int(group[base].isna().sum()),
                input_tokens=int(group[f"{base}_input_tokens"].sum()),
                output_tokens=int(group[f"{base}_output_tokens"].sum()),
                cost=float(cost.sum()) if cost.notna().any() else math.nan,
                cost_paid=float(cost[~cached].sum()) if cost.notna().any() else math.nan,
                latency_p50=float(np.percentile(latency, 50)) if len(latency) else math.nan,
                latency_p95=float(np.percentile(latency, 95)) if len(latency) else math.nan,
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, ax=None):
        """Mean score (with its interval) against cost and against p50 latency, one point per configuration."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ConfigError('plot() needs matplotlib: pip install "llmframe[plot]"') from None
        summary = self.summary()
        if ax is None:
            fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        else:
            axes = np.atleast_1d(ax)
            fig = axes[0].figure
        # Label points by what varies: a column with one value (the only template, say) is noise on every point.
        varying = [c for c in self.config_columns if summary[c].nunique(dropna=False) > 1] or self.config_columns
        labels = [" ".join(str(summary.loc[i, c]) for c in varying) for i in summary.index]
        error = [summary["score_mean"] - summary["score_low"], summary["score_high"] - summary["score_mean"]]
        for axis, column, title in zip(axes, ("cost", "latency_p50"), ("cost (USD)", "latency p50 (s)")):
            axis.errorbar(summary[column], summary["score_mean"], yerr=error, fmt="o", capsize=3)
            for x, y, label in zip(summary[column], summary["score_mean"], labels):
                axis.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            axis.set_xlabel(title)
        axes[0].ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))  # fractions of a cent: 1e-4, not 0.00010
        axes[0].set_ylabel("mean score")
        if ax is None:
            fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        return f"SweepResult({len(self.table)} rows; .table, .summary(), .plot())"


def _mean_interval(scores: np.ndarray) -> dict:
    """Mean and its normal-approximation interval; NaN where there is nothing (or one value) to go on."""
    n = len(scores)
    if n == 0:
        return {"score_mean": math.nan, "score_low": math.nan, "score_high": math.nan}
    mean = float(scores.mean())
    if n < 2:
        return {"score_mean": mean, "score_low": math.nan, "score_high": math.nan}
    half = constants.CONFIDENCE_Z * float(scores.std(ddof=1)) / math.sqrt(n)
    low, high = mean - half, mean + half
    if scores.min() >= 0 and scores.max() <= 1:  # a proportion's interval stays within 0..1
        low, high = max(0.0, low), min(1.0, high)
    return {"score_mean": mean, "score_low": low, "score_high": high}
