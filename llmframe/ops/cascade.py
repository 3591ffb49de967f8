"""Model cascades: every row answered by the first model, only the rows it is unsure of sent to the next.

A row's confidence is its answer's confidence field (the output schema's `confidence`, a number from 0 to 1),
else the answer's token log-probabilities (exp of their mean: OpenAI and compatible servers, asked for with
logprobs=true), and 0 where the answer failed or did not validate. cascade=[model_b, (model_c, 0.9)] sends the
rows whose confidence under the model before is below the stage's threshold (CASCADE_THRESHOLD unless given) to it;
calibrate=n first runs a sample of n rows on every model and chooses each threshold so that the cascade's
answers agree with the last model's on CASCADE_AGREEMENT of the sample. Each stage is an ordinary planned
run (its own cache keys, retries, limits) over the rows that reach it; the answers are merged per row, and the
report says how many rows each model answered and what they cost against the last model alone.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import constants, options
from ..cost.estimate import Estimate
from ..cost.money import dollars
from ..cost.prices import Pricer
from ..engine import run as engine
from ..engine.answers import Answers
from ..engine.loop import run_async, run_sync
from ..engine.outcome import Outcome
from ..errors import ConfigError
from ..plan.build import Plan
from ..plan.subset import Subset
from ..providers import resolve


@dataclass(frozen=True)
class Stage:
    """One model of a cascade, and the confidence below which a row reaches it (None: the first model)."""

    model: Any
    threshold: float | None


def stages(model: Any, cascade: Any) -> list[Stage]:
    """model= and cascade= as the cascade's stages; a ConfigError naming the fix for a bad one."""
    if not isinstance(cascade, (list, tuple)) or not cascade:
        raise ConfigError('cascade must be a list of models, e.g. cascade=["openai:gpt-4o"], each optionally with '
                          'the confidence below which rows go to it: [("openai:gpt-4o", 0.9)]')
    out = [Stage(model, None)]
    for entry in cascade:
        name, threshold = (entry if isinstance(entry, tuple) and len(entry) == 2 else (entry, None))
        if not isinstance(name, str) or ":" not in name:
            raise ConfigError(f'cascade entries are "provider:model" strings or (model, threshold) pairs, '
                              f'got {entry!r}')
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0 <= threshold <= 1):
            raise ConfigError(f"a cascade threshold is a confidence from 0 to 1, got {threshold!r}")
        if name == model and len(out) == 1:
            continue  # cascade=[model_a, model_b] with model=model_a: the first stage named again
        out.append(Stage(name, constants.CASCADE_THRESHOLD if threshold is None else float(threshold)))
    if len(out) < 2:
        raise ConfigError("cascade needs at least one model after model=")
    return out


def confidences(plan: Plan, answers: Answers) -> np.ndarray:
    """Each distinct request's confidence: its answer's confidence field, else its token log-probabilities'
    (exp of their mean); 0 where it failed or has neither."""
    out = np.nan_to_num(answers.confidence.astype(np.float64), nan=0.0)
    failed = answers.failed()
    out[failed] = 0.0
    field = constants.CASCADE_CONFIDENCE_FIELD
    for j in np.flatnonzero(~failed).tolist():
        value = answers.parsed[j] if answers.parsed is not None else None
        number = value.get(field) if isinstance(value, dict) else getattr(value, field, None)
        if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
            out[j] = min(1.0, max(0.0, float(number)))
    return out


def has_confidence_field(output: Any) -> bool:
    """True for a structured output with a `confidence` field, which the model fills in."""
    from pydantic import BaseModel

    fields = (output.model_fields if isinstance(output, type) and issubclass(output, BaseModel)
              else (output.get("properties") or {}) if isinstance(output, dict) else {})
    return constants.CASCADE_CONFIDENCE_FIELD in fields


def logprob_params(chain: list[Stage], output: Any) -> list[dict]:
    """What each stage adds to params= for its confidence: log-probabilities, where no confidence field gives it
    (the last stage needs none); a ConfigError where a stage can give neither."""
    if has_confidence_field(output):
        return [{} for _ in chain]
    out = []
    for stage in chain[:-1]:
        kind = resolve(stage.model).kind
        if kind.logprob_params is None:
            raise ConfigError(f"cascade needs each answer's confidence, and {stage.model} gives no token "
                              f"log-probabilities: pass output= a pydantic model (or JSON schema) with a "
                              f"`{constants.CASCADE_CONFIDENCE_FIELD}: float` field (0 to 1) the model fills in")
        out.append(dict(kind.logprob_params))
    return [*out, {}]


# A stage's plan: (some of the rows, or None for all of them; the stage's model; what asks for its confidence).
Replan = Callable[[Any, Any, dict], Plan]
Flow = Generator[Plan, Outcome, tuple[Plan, Outcome, dict]]


def setup(given: dict) -> tuple[list[Stage], int]:
    """Pop cascade= and calibrate= from generate's options, checked: the stages and the calibration sample size."""
    for name in ("cascade", "calibrate"):  # the options table's own checks first, as a plan makes them
        given[name] = options.BY_NAME[name].check(name, given.get(name, options.BY_NAME[name].default))
    cascade, calibrate = given.pop("cascade"), given.pop("calibrate")
    if given.get("usage"):
        raise ConfigError("cascade: usage columns per row are not available yet; the report gives each model's "
                          "rows, tokens and cost")
    return stages(given["model"], cascade), calibrate


def flow(rows: Any, replan: Replan, chain: list[Stage], asks: list[dict], calibrate: int,
         first: Plan | None = None) -> Flow:
    """The cascade as a generator of the plans to run: it yields each stage's plan, is sent its Outcome, and
    returns (the first plan, the merged Outcome, the report entry). drive() and adrive() run it."""
    first = first if first is not None else replan(None, chain[0].model, asks[0])
    calibration = (yield from _calibrate(rows, replan, chain, first, calibrate, asks)) if calibrate else None
    thresholds = calibration["thresholds"] if calibration else [s.threshold for s in chain[1:]]
    outcome = yield first
    merged = outcome.answers.snapshot()
    owner = np.zeros(len(merged), dtype=np.int64)  # which stage answered each of the first plan's requests
    spent = [_spent(first, outcome)]
    confidence = confidences(first, merged)
    for n, (stage, threshold, ask) in enumerate(zip(chain[1:], thresholds, asks[1:]), 1):
        up = np.flatnonzero((confidence < threshold) & (first.weights > 0))
        if not len(up):
            spent.append((0.0, 0, 0, None))
            continue
        plan = replan(Subset(rows, first.first_row[up]), stage.model, ask)
        result = yield plan
        spent.append(_spent(plan, result))
        theirs = plan.row_to_key  # subset row k -> the stage's request
        later = confidences(plan, result.answers)
        for k, j in enumerate(up.tolist()):
            if theirs[k] >= 0 and result.answers.done[theirs[k]]:
                merged[j] = result.answers[int(theirs[k])]
                owner[j] = n
                confidence[j] = later[theirs[k]]
    entry = _report(first, chain, thresholds, owner, spent, calibration)
    return first, Outcome(merged, outcome.counters, outcome.seconds, outcome.job_id), entry


def drive(steps: Flow, execute: Callable[[Plan], Outcome]) -> tuple[Plan, Outcome, dict]:
    """Run a cascade's flow, each plan by execute(plan)."""
    try:
        plan = next(steps)
        while True:
            plan = steps.send(execute(plan))
    except StopIteration as done:
        return done.value


async def adrive(steps: Flow, execute: Callable[[Plan], Awaitable[Outcome]]) -> tuple[Plan, Outcome, dict]:
    """drive() for async code: each plan awaited."""
    try:
        plan = next(steps)
        while True:
            plan = steps.send(await execute(plan))
    except StopIteration as done:
        return done.value


def attach(report: dict | None, entry: dict) -> None:
    """Put the cascade's entry in a run report: every stage's requests are what was sent and paid."""
    if report is None:
        return
    report["cascade"] = entry
    # The first plan's view counts only the merged answers.
    report.update(input_tokens=entry["input_tokens"], output_tokens=entry["output_tokens"])
    if "cost" in report:
        report["cost"] = entry["cost"]


def _face_flow(verbs: Any, template: Any, given: dict) -> Flow:
    """A face's cascade: the first stage over the face's own rows, the later ones over some of them."""
    chain, calibrate = setup(given)
    asks = logprob_params(chain, given.get("output"))
    rows, extra = verbs._rows()

    def replan(subset: Any, model: Any, ask: dict) -> Plan:
        if subset is None:
            return verbs._plan(template, _with(given, model, ask))
        return verbs._plan_rows(subset, template, {**_with(given, model, ask), **extra})

    return flow(rows, replan, chain, asks, calibrate)


def run(verbs: Any, template: Any, given: dict, call: tuple) -> Any:
    """A cascade through a face's verbs: plan and run each stage on the rows that reach it, merge, report."""
    first, outcome, entry = drive(_face_flow(verbs, template, given), lambda plan: run_sync(engine.start(plan)))
    out = verbs._result(first, outcome, call)
    attach(verbs._report_of(out), entry)
    return out


async def arun(verbs: Any, template: Any, given: dict, call: tuple) -> Any:
    """run() for agenerate: each stage awaited on llmframe's loop."""
    steps = _face_flow(verbs, template, given)
    first, outcome, entry = await adrive(steps, lambda plan: run_async(engine.start(plan)))
    out = verbs._result(first, outcome, call)
    attach(verbs._report_of(out), entry)
    return out


def estimate(replan: Replan, chain: list[Stage], asks: list[dict], calibrate: int, mode: str,
             first: Plan | None = None) -> Estimate:
    """A cascade's dry run: the first model on every row, and an assumed CASCADE_ESTIMATE_SHARE of the rows each
    model is given on the next one (said in the notes, beside the cost of every row on the last model)."""
    plans = [first if n == 0 and first is not None else replan(None, stage.model, ask)
             for n, (stage, ask) in enumerate(zip(chain, asks))]
    made = [engine.estimate(plan, mode=mode) for plan in plans]
    share, rows = constants.CASCADE_ESTIMATE_SHARE, made[0].rows - made[0].skipped
    sample = min(calibrate, rows) / rows if rows else 0.0  # calibrate=n: n more rows on every later model
    fractions = [1.0] + [share ** n + sample for n in range(1, len(made))]
    cost = None if any(e.cost is None for e in made) else tuple(
        float(sum(e.cost[i] * f for e, f in zip(made, fractions))) for i in (0, 1))
    last = made[-1].cost
    notes = [f"cascade: {made[0].model} answers all {rows:,} rows; assumed: {share:.0%} of the rows a model is "
             "given go on to the next (known only once the answers are in; cached answers cost nothing)" +
             (f", and the calibrate={calibrate} sample on every model" if calibrate else "") + ": " +
             "; ".join(f"{e.model} about {round(rows * f):,} rows" for e, f in zip(made[1:], fractions[1:]))]
    if last is not None:
        notes.append(f"cascade: every row on {made[-1].model} alone would cost {dollars(last[0])} to "
                     f"{dollars(last[1])}")
    return replace(made[0], cost=cost, notes=[*made[0].notes, *notes])


class Cascading:
    """An operator's cascade (ops/calls.Caller): its stages, and each first-stage plan's way to run as one."""

    def __init__(self, options: dict, model: Any):
        given = {**options, "model": model}
        self.chain, self.calibrate = setup(given)
        for name in ("cascade", "calibrate"):
            options.pop(name, None)
        self._made: dict[int, tuple] = {}  # id(first plan) -> (that plan, its rows, replan, asks)

    def plan(self, rows: Any, replan: Replan, output: Any) -> Plan:
        """The first stage's plan of an operator's call over these rows; replan(rows, model, ask) plans a stage."""
        asks = logprob_params(self.chain, output)
        first = replan(None, self.chain[0].model, asks[0])
        self._made[id(first)] = (first, rows, replan, asks)
        return first

    def owns(self, plan: Plan) -> bool:
        """True for a first-stage plan plan() made (an operator's embedding plans are not)."""
        return id(plan) in self._made and self._made[id(plan)][0] is plan

    def run(self, plan: Plan, execute: Callable[[Plan], Outcome]) -> tuple[Plan, Outcome, dict]:
        """Run the cascade a plan() made, each stage by execute(plan)."""
        _, rows, replan, asks = self._made.pop(id(plan))
        return drive(flow(rows, replan, self.chain, asks, self.calibrate, first=plan), execute)

    def estimate(self, plan: Plan, mode: str) -> Estimate:
        """estimate() of the cascade a plan() made."""
        _, _, replan, asks = self._made.pop(id(plan))
        return estimate(replan, self.chain, asks, self.calibrate, mode, first=plan)


def stage_options(given: dict, model: Any, ask: dict) -> dict:
    """generate's options for one stage of a cascade (model= included), as the first stage's options say."""
    return _with(given, model, ask)


def face_estimate(verbs: Any, template: Any, given: dict, mode: str, placeholder: Callable[[Any], Any]) -> Estimate:
    """A face's estimate(cascade=...): each stage planned over all rows, nothing sent, no key needed."""
    chain, calibrate = setup(given)
    asks = logprob_params(chain, given.get("output"))

    def replan(_rows: Any, model: Any, ask: dict) -> Plan:
        opts = _with(given, model, ask)
        opts["api_key"] = opts.get("api_key") or placeholder(model)
        return verbs._plan(template, opts)

    return estimate(replan, chain, asks, calibrate, mode)


def _spent(plan: Plan, outcome: Outcome) -> tuple[float | None, int, int, float | None]:
    """(USD paid in this run, input and output tokens sent, USD per row at today's price) of one stage."""
    answers = outcome.answers
    sent = answers.done & ~answers.cached
    pricer = Pricer.for_run(plan.model, plan.pricer.overrides if plan.pricer else None, warn=False,
                            price_id=plan.provider.target.price_id)
    costs = pricer.costs(answers.input_tokens, answers.output_tokens, answers.cached_input_tokens,
                         answers.cache_write_tokens)
    paid = None if costs is None else float(costs[sent].sum())
    answered = int(plan.weights[answers.done].sum())
    per_row = None if costs is None or not answered else float((costs * plan.weights)[answers.done].sum()) / answered
    return paid, int(answers.input_tokens[sent].sum()), int(answers.output_tokens[sent].sum()), per_row


def _report(first: Plan, chain: list[Stage], thresholds: list, owner: np.ndarray, spent: list,
            calibration: dict | None) -> dict:
    """The cascade's report entry: rows per model, cost per model and against the last model alone."""
    weights = first.weights
    names = [first.model] + [str(s.model) for s in chain[1:]]
    rows = {name: int(weights[owner == n].sum()) for n, name in enumerate(names)}
    paid = [s[0] for s in spent]
    extra = calibration or {}
    total = None if any(p is None for p in paid) or (calibration and extra["cost"] is None) \
        else round(sum(paid) + (extra.get("cost") or 0.0), 8)  # the calibration sample is paid for too
    last = spent[-1][3]
    alone = None if last is None else round(last * int(weights.sum()), 8)
    out = {"models": names, "thresholds": [round(t, 4) for t in thresholds], "rows_per_model": rows,
           "cost_per_model": dict(zip(names, [None if p is None else round(p, 8) for p in paid])),
           "cost": total, "cost_all_on_last_model": alone,
           "input_tokens": sum(s[1] for s in spent) + extra.get("input_tokens", 0),
           "output_tokens": sum(s[2] for s in spent) + extra.get("output_tokens", 0)}
    if total is not None and alone:
        out["cost_ratio_to_last_model"] = round(total / alone, 4)
    if calibration is not None:
        out["calibration"] = {k: v for k, v in calibration.items() if k != "thresholds"}
    return out


# What says how to reach model='s provider: a stage on another provider (a local model, then an API) reads its
# own from the environment, as a model= of its own would.
PROVIDER_BOUND = ("api_key", "base_url", "provider_options", "api")


def _with(given: dict, model: Any, ask: dict) -> dict:
    """generate's options for one stage: its model, and params= asking for log-probabilities where it must."""
    out = {**given, "model": model}
    if model is not given["model"] and _provider(model) != _provider(given["model"]):
        out.update({name: None for name in PROVIDER_BOUND if name in out})
    if ask:
        out["params"] = {**(given.get("params") or {}), **ask}
    return out


def _provider(model: Any) -> str:
    """The provider prefix of a model= ("openai"), or a Provider instance's name."""
    return model.partition(":")[0] if isinstance(model, str) else getattr(model, "name", "")


def _calibrate(rows: Any, replan: Replan, chain: list[Stage], first: Plan, n: int, asks: list[dict]) -> Generator:
    """Run a sample of n rows on every model and choose each threshold for CASCADE_AGREEMENT with the last model."""
    valid = np.flatnonzero(first.weights > 0)
    rng = np.random.default_rng(constants.CASCADE_SEED)
    sample = np.sort(rng.choice(valid, size=min(n, len(valid)), replace=False))
    subset = Subset(rows, first.first_row[sample])
    answers, confidence, spent = [], [], []
    for stage, ask in zip(chain, asks):
        plan = replan(subset, stage.model, ask)
        result = yield plan
        spent.append(_spent(plan, result))
        keys = plan.row_to_key
        values = [_value(result.answers, int(k)) if k >= 0 else None for k in keys]
        answers.append(values)
        confidence.append(np.array([confidences(plan, result.answers)[k] if k >= 0 else 0.0 for k in keys]))
    target = constants.CASCADE_AGREEMENT
    truth = answers[-1]
    thresholds = []
    for n_stage in range(1, len(chain)):
        mine, conf = answers[n_stage - 1], confidence[n_stage - 1]
        chosen = 1.0 + 1e-9
        for t in sorted(set(conf.tolist())):
            kept = conf >= t
            agree = np.mean([(mine[i] if kept[i] else truth[i]) == truth[i] for i in range(len(truth))])
            if agree >= target:
                chosen = t
                break
        thresholds.append(float(min(chosen, 1.0 + 1e-9)))
    kept = confidence[0] >= thresholds[0]
    reached = float(np.mean([(answers[0][i] if kept[i] else truth[i]) == truth[i] for i in range(len(truth))]))
    paid = [s[0] for s in spent]
    return {"rows": len(sample), "target_agreement": target, "agreement": round(reached, 4),
            "cost": None if any(p is None for p in paid) else round(sum(paid), 8),
            "input_tokens": sum(s[1] for s in spent), "output_tokens": sum(s[2] for s in spent),
            "thresholds": thresholds}


def _value(answers: Answers, j: int) -> Any:
    """An answer as compared for agreement: its fields but its confidence (None where it failed)."""
    if answers.failed()[j]:
        return None
    value = answers.parsed[j] if answers.parsed is not None else answers.text(j)
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != constants.CASCADE_CONFIDENCE_FIELD}
    return value
