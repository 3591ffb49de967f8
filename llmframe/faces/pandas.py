"""df.llm and s.llm: validate, then plan -> execute -> collect; return a new object (pandas caches accessors).

Every option of generate is a keyword of its own here, so that tab completion, help() and
inspect.signature show them; tests/test_options.py keeps each signature equal to llmframe.options' table.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Any

import pandas as pd

from . import frames, planning
from .pandas_vectors import VectorVerbs
from .. import constants
from ..options import OPTIONS, PASSED_ON, check_names, documented, keywords, template_only_positional
from ..plan.build import Plan
from ..plan.output import Output
from ..batch import BatchJob
from ..cost import estimate as estimate_
from ..cost.budget import Budget
from ..cost.meter import CostMeter
from ..apps import sweep as sweep_
from ..errors import ConfigError
from ..cost.estimate import Estimate
from ..apps.sweep import SweepResult
from ..engine import run as engine
from ..engine.loop import run_async, run_sync
from ..engine.outcome import Outcome
from ..plan.template import TemplateLike
from ..providers.base import Provider

_SERIES_COLUMN = "value"  # what "{}" refers to when a Series has no name

# Run id -> the call that made a frame, so retry_failed can repeat it. In memory only: it holds the key.
_CALLS: OrderedDict[str, tuple] = OrderedDict()


def _remember(out: pd.DataFrame, call: tuple) -> pd.DataFrame:
    run_id = uuid.uuid4().hex
    out.attrs[constants.REPORT_ATTR]["run_id"] = run_id
    _CALLS[run_id] = call
    while len(_CALLS) > constants.REMEMBERED_CALLS:
        _CALLS.popitem(last=False)
    return out


def generate_within(frame: pd.DataFrame, template: TemplateLike, given: dict, budget: Budget) -> pd.DataFrame:
    """frame.llm.generate(template, **given), its requests reserved from and settled into a max_cost budget
    shared with other calls: `llmframe run`'s chunks draw on one budget, as a single call's rows do."""
    accessor, call = frame.llm, (template, keywords(given))
    plan = accessor._plan(*call)
    return accessor._result(plan, run_sync(engine.start(plan, meter=CostMeter.for_plan(plan, budget))), call)


class _Base(VectorVerbs):
    """What df.llm and s.llm share: the verbs and their keywords; the subclasses say what a row is."""

    def __init__(self, obj):
        self._obj = obj

    @template_only_positional
    @documented
    def generate(self, template: TemplateLike, *, model: str | Provider, output: Any = constants.DEFAULT_OUTPUT,
                 errors: str = constants.ERROR_MODES[0], prefix: str = "", output_mode: str = constants.OUTPUT_MODES[0],
                 strict: bool = True, structured: str = constants.STRUCTURED_MODES[0],
                 invalid_retries: int = constants.INVALID_ANSWER_RETRIES, usage: bool = False,
                 system: str | None = None, temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
                 params: dict | None = None, missing: str = constants.MISSING_MODES[0],
                 allow_no_placeholder: bool = False, max_prompt_tokens: int | None = None, cache: bool | str = True,
                 cache_dir: str | None = None, max_concurrency: int | None = None, rpm: float | None = None,
                 tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
                 max_failures_in_a_row: int = constants.BREAKER_FAILURES,
                 timeout: float = constants.REQUEST_TIMEOUT_SECONDS, max_wait: float = constants.MAX_WAIT_SECONDS,
                 progress: bool | None = None, api_key: str | None = None, base_url: str | None = None,
                 provider_options: dict | None = None, mode: str = constants.BATCH_MODES[0],
                 poll_interval: float | None = None, retry_online: bool = False, prices: dict | None = None,
                 max_cost: float | None = None, **unknown: Any) -> pd.DataFrame | pd.Series:
        """Answer the template for every row; returns a new frame with the answer (and error) columns.

        template: "{column}" string, list of {"role", "content"} messages, or function row-dict -> prompt.
        On a Series, "{}" is the value and the answers come back as a Series on the same index (a
        structured output= gives a frame of its fields); failed rows are missing values, and the report in
        .attrs["llmframe"] counts and samples their errors (use the DataFrame accessor for an error column).
        """
        call = (template, keywords(locals()))
        plan = self._plan(*call)
        return self._result(plan, run_sync(engine.start(plan)), call)

    @template_only_positional
    @documented
    async def agenerate(self, template: TemplateLike, *, model: str | Provider, output: Any = constants.DEFAULT_OUTPUT,
                        errors: str = constants.ERROR_MODES[0], prefix: str = "",
                        output_mode: str = constants.OUTPUT_MODES[0], strict: bool = True,
                        structured: str = constants.STRUCTURED_MODES[0],
                        invalid_retries: int = constants.INVALID_ANSWER_RETRIES, usage: bool = False,
                        system: str | None = None, temperature: float | None = None, top_p: float | None = None,
                        max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
                        params: dict | None = None, missing: str = constants.MISSING_MODES[0],
                        allow_no_placeholder: bool = False, max_prompt_tokens: int | None = None,
                        cache: bool | str = True, cache_dir: str | None = None, max_concurrency: int | None = None,
                        rpm: float | None = None, tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
                        max_failures_in_a_row: int = constants.BREAKER_FAILURES,
                        timeout: float = constants.REQUEST_TIMEOUT_SECONDS,
                        max_wait: float = constants.MAX_WAIT_SECONDS, progress: bool | None = None,
                        api_key: str | None = None, base_url: str | None = None, provider_options: dict | None = None,
                        mode: str = constants.BATCH_MODES[0], poll_interval: float | None = None,
                        retry_online: bool = False, prices: dict | None = None, max_cost: float | None = None,
                        **unknown: Any) -> pd.DataFrame | pd.Series:
        """The async twin of generate, for code that already runs an event loop."""
        call = (template, keywords(locals()))
        plan = self._plan(*call)
        return self._result(plan, await run_async(engine.start(plan)), call)

    @template_only_positional
    @documented(mode='`"online"` or `"batch"`: the requests priced at the online or the batch rate')
    def estimate(self, template: TemplateLike, *, model: str | Provider, output: Any = constants.DEFAULT_OUTPUT,
                 prefix: str = "", output_mode: str = constants.OUTPUT_MODES[0], strict: bool = True,
                 structured: str = constants.STRUCTURED_MODES[0],
                 invalid_retries: int = constants.INVALID_ANSWER_RETRIES, usage: bool = False,
                 system: str | None = None, temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
                 params: dict | None = None, missing: str = constants.MISSING_MODES[0],
                 allow_no_placeholder: bool = False, max_prompt_tokens: int | None = None, cache: bool | str = True,
                 cache_dir: str | None = None, max_concurrency: int | None = None, rpm: float | None = None,
                 tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
                 max_failures_in_a_row: int = constants.BREAKER_FAILURES,
                 timeout: float = constants.REQUEST_TIMEOUT_SECONDS, max_wait: float = constants.MAX_WAIT_SECONDS,
                 progress: bool | None = None, api_key: str | None = None, base_url: str | None = None,
                 provider_options: dict | None = None, mode: str = constants.BATCH_MODES[0],
                 poll_interval: float | None = None, retry_online: bool = False, prices: dict | None = None,
                 max_cost: float | None = None, **unknown: Any) -> Estimate:
        """A dry run of generate with the same arguments: rows, uncached rows, tokens, cost range, sample prompts.

        Sends nothing and needs no API key.
        """
        given = keywords(locals())
        if mode not in estimate_.MODES:
            raise ConfigError(f"mode must be one of {estimate_.MODES}, got {mode!r}")
        # Nothing is sent, so no key is needed; a placeholder lets the plan check everything else (a Provider
        # instance carries its own). mode= says which prices to use here: the plan is an online one, as it always was.
        placeholder = None if isinstance(model, Provider) else constants.ESTIMATE_API_KEY
        given.update(mode=constants.BATCH_MODES[0], api_key=api_key or placeholder, progress=False)
        return engine.estimate(self._plan(template, given), mode=mode)

    def _plan(self, template, given: dict) -> Plan:
        frame, extra = self._frame()
        return planning.plan(frames.rows_of(frame), template, **given, **extra)

    def _frame(self) -> tuple[pd.DataFrame, dict]:
        """The frame the rows come from, and plan()'s keywords that say how to read it."""
        raise NotImplementedError

    def _result(self, plan: Plan, outcome: Outcome, call: tuple) -> pd.DataFrame | pd.Series:
        raise NotImplementedError


@pd.api.extensions.register_dataframe_accessor("llm")
class DataFrameAccessor(_Base):
    """Run a model over every row of a DataFrame."""

    @template_only_positional
    @documented(mode='always `"batch"`')
    def submit(self, template: TemplateLike, *, model: str | Provider, output: Any = constants.DEFAULT_OUTPUT,
               errors: str = constants.ERROR_MODES[0], prefix: str = "", output_mode: str = constants.OUTPUT_MODES[0],
               strict: bool = True, structured: str = constants.STRUCTURED_MODES[0],
               invalid_retries: int = constants.INVALID_ANSWER_RETRIES, usage: bool = False,
               system: str | None = None, temperature: float | None = None, top_p: float | None = None,
               max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
               params: dict | None = None, missing: str = constants.MISSING_MODES[0],
               allow_no_placeholder: bool = False, max_prompt_tokens: int | None = None, cache: bool | str = True,
               cache_dir: str | None = None, max_concurrency: int | None = None, rpm: float | None = None,
               tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
               max_failures_in_a_row: int = constants.BREAKER_FAILURES,
               timeout: float = constants.REQUEST_TIMEOUT_SECONDS, max_wait: float = constants.MAX_WAIT_SECONDS,
               progress: bool | None = None, api_key: str | None = None, base_url: str | None = None,
               provider_options: dict | None = None, mode: str = constants.BATCH_MODES[1],
               poll_interval: float | None = None, retry_online: bool = False, prices: dict | None = None,
               max_cost: float | None = None, **unknown: Any) -> BatchJob:
        """Submit the rows to the provider's batch API and return at once; generate's arguments, mode="batch".

        The handle: job.status() (one poll), job.wait() (blocks, with a progress bar), job.result() (the
        frame generate would return), job.cancel(). Calling submit again with the same arguments
        re-attaches to the same jobs instead of submitting twice.
        """
        call = (template, keywords(locals()))
        if mode != "batch":
            raise ConfigError(f"submit always uses the batch API; drop mode={mode!r} "
                              "(or call generate for an online run)")
        plan = self._plan(*call)
        return BatchJob(plan, lambda outcome: self._result(plan, outcome, call))

    def retry_failed(self) -> pd.DataFrame:
        """Repeat the generate call that made this frame: failed rows are sent again, the rest come from cache."""
        call = _CALLS.get((self._obj.attrs.get(constants.REPORT_ATTR) or {}).get("run_id"))
        if call is None:
            raise ConfigError(
                "this frame was not made by df.llm.generate in this Python process; repeat the original "
                "call instead: answers are cached, so only the failed rows are sent again"
            )
        template, given = call
        if given["cache"] == "refresh":
            given = {**given, "cache": True}  # the refreshed answers are in the cache now
        made = Output.resolve(given["output"], prefix=given["prefix"], mode=given["output_mode"],
                              errors=given["errors"], frame_columns=(), usage=given["usage"]).names
        inputs = self._obj.drop(columns=[c for c in made if c in self._obj])
        return inputs.llm.generate(template, **given)

    # Not generate's keywords: params= and max_cost= mean a grid and the whole sweep's cap here, output= is a
    # text column, and usage= and errors= are the sweep's own; the rest are generate's, checked by name.
    @template_only_positional
    @documented(names=[o.name for o in OPTIONS if o.name in PASSED_ON - {"params", "max_cost", "usage"}])
    def sweep(self, template: TemplateLike | list | dict, *, models: str | list[str], params: dict | None = None,
              repeats: int = 1, output: str = constants.DEFAULT_OUTPUT, score: Any = None,
              max_cost: float | None = None, dry_run: bool = False, **options: Any) -> SweepResult | pd.DataFrame:
        """Run every (template, model, parameter setting, repeat) over the frame, concurrently; score the answers.

        template: one template, a list of them, or a dict name -> template. models: "provider:model" strings.
        params: generation parameter -> list of values (the grid is their product), e.g. {"temperature": [0, 0.7]}.
        repeats: samples per configuration, each with its own seed. score: a function row -> number/bool, or a
        scorer from llmframe.scorers. max_cost caps the whole sweep. options: generate's, below.
        Returns a SweepResult: .table (one row per input row and configuration), .summary(), .plot().
        dry_run=True sends nothing and returns one estimate per configuration (totals in .attrs["llmframe"]).
        """
        check_names(options)
        return sweep_.sweep(self._obj, template, models=models, params=params, repeats=repeats, output=output,
                            score=score, max_cost=max_cost, options=options, dry_run=dry_run)

    def _frame(self) -> tuple[pd.DataFrame, dict]:
        return self._obj, {}

    def _result(self, plan: Plan, outcome: Outcome, call: tuple) -> pd.DataFrame:
        return _remember(frames.to_frame(self._obj, plan, outcome), call)


@pd.api.extensions.register_series_accessor("llm")
class SeriesAccessor(_Base):
    """Run a model over every value of a Series; "{}" in the template is the value."""

    def _frame(self) -> tuple[pd.DataFrame, dict]:
        name = self._obj.name
        column = name if isinstance(name, str) and name else _SERIES_COLUMN
        # The Series' own values are not part of the result, so output names cannot clash with them.
        return self._obj.to_frame(name=column), {"positional_column": column, "output_frame_columns": ()}

    def _result(self, plan: Plan, outcome: Outcome, call: tuple) -> pd.Series | pd.DataFrame:
        return frames.to_series(self._obj.index, plan, outcome)
