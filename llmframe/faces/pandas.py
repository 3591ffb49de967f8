"""df.llm and s.llm: validate, delegate to the pipeline, return a new object (pandas caches accessors)."""

from __future__ import annotations

import inspect
import uuid
from collections import OrderedDict
from typing import Any

import pandas as pd

from ..collect import columns
from . import frames
from .. import constants
from ..plan import build as pipeline
from ..batch import BatchJob
from ..cost import estimate as estimate_
from ..apps import sweep as sweep_
from ..errors import ConfigError
from ..cost.estimate import Estimate
from ..apps.sweep import SweepResult
from ..engine.executor import run_async, run_sync
from ..plan.template import TemplateLike

_SERIES_COLUMN = "value"  # what "{}" refers to when a Series has no name


# Options a caller may pass through **options: plan()'s keywords, less what the accessor sets itself.
_OPTIONS = frozenset(inspect.signature(pipeline.plan).parameters) - {"frame", "template", "model", "output",
                                                                      "errors", "positional_column",
                                                                      "output_frame_columns"}


def _check_options(options: dict) -> None:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; valid options are {sorted(_OPTIONS)}")


def _estimate(frame: pd.DataFrame, template, model, output, mode, options, **extra) -> Estimate:
    if mode not in estimate_.MODES:
        raise ConfigError(f"mode must be one of {estimate_.MODES}, got {mode!r}")
    _check_options(options)
    # Nothing is sent, so no key is needed; a placeholder lets the plan check everything else.
    options = {**options, "api_key": options.get("api_key") or "estimate-only", "progress": False}
    run = pipeline.plan(frames.rows_of(frame), template, model=model, output=output, **options, **extra)
    return estimate_.estimate(run, mode=mode)


# Run id -> the call that made a frame, so retry_failed can repeat it. In memory only: it holds the key.
_CALLS: OrderedDict[str, tuple] = OrderedDict()


def _remember(out: pd.DataFrame, call: tuple) -> pd.DataFrame:
    run_id = uuid.uuid4().hex
    out.attrs[constants.REPORT_ATTR]["run_id"] = run_id
    _CALLS[run_id] = call
    while len(_CALLS) > constants.REMEMBERED_CALLS:
        _CALLS.popitem(last=False)
    return out


class _Base:
    def __init__(self, obj):
        self._obj = obj


@pd.api.extensions.register_dataframe_accessor("llm")
class DataFrameAccessor(_Base):
    """Run a model over every row of a DataFrame."""

    def generate(self, template: TemplateLike, *, model: str, output: Any = constants.DEFAULT_OUTPUT,
                 errors: str = "column", **options: Any) -> pd.DataFrame:
        """Answer the template for every row; returns a new frame with the answer (and error) column.

        template: "{column}" string, list of {"role", "content"} messages, or function row-dict -> prompt.
        model: "provider:model", e.g. "openai:gpt-4o-mini".
        output: the answer column's name, or a pydantic model / JSON Schema dict: one typed column per field
        (prefix= names them, output_mode="object" keeps one column of validated objects instead).
        options: the README's options table: system, temperature, top_p, max_tokens, seed, stop, params,
        missing, allow_no_placeholder, max_prompt_tokens, cache, cache_dir, max_concurrency, rpm, tpm,
        max_attempts, max_failures_in_a_row, timeout, max_wait, prefix, output_mode, strict, structured,
        invalid_retries,
        progress, api_key, base_url, provider_options, mode ("online", "batch", "auto"), poll_interval, retry_online,
        usage (per-row tokens, cost, cached, latency, finish reason),
        prices ({"provider:model": {"input_mtok": ..., "output_mtok": ...}}), max_cost (USD; BudgetExceeded).
        """
        run = self._plan(template, model, output, errors, options)
        out = frames.to_frame(self._obj, run, run_sync(run.start()))
        return _remember(out, (template, model, output, errors, options))

    async def agenerate(self, template: TemplateLike, *, model: str, output: Any = constants.DEFAULT_OUTPUT,
                        errors: str = "column", **options: Any) -> pd.DataFrame:
        """The async twin of generate, for code that already runs an event loop."""
        run = self._plan(template, model, output, errors, options)
        out = frames.to_frame(self._obj, run, await run_async(run.start()))
        return _remember(out, (template, model, output, errors, options))

    def submit(self, template: TemplateLike, *, model: str, output: Any = constants.DEFAULT_OUTPUT,
               errors: str = "column", **options: Any) -> BatchJob:
        """Submit the rows to the provider's batch API and return at once; generate's arguments, mode="batch".

        The handle: job.status() (one poll), job.wait() (blocks, with a progress bar), job.result() (the
        frame generate would return), job.cancel(). Calling submit again with the same arguments
        re-attaches to the same jobs instead of submitting twice.
        """
        if options.setdefault("mode", "batch") != "batch":
            raise ConfigError(f"submit always uses the batch API; drop mode={options['mode']!r} "
                              "(or call generate for an online run)")
        run = self._plan(template, model, output, errors, options)
        call = (template, model, output, errors, options)
        return BatchJob(run, lambda responses: _remember(frames.to_frame(self._obj, run, responses), call))

    def retry_failed(self) -> pd.DataFrame:
        """Repeat the generate call that made this frame: failed rows are sent again, the rest come from cache."""
        call = _CALLS.get((self._obj.attrs.get(constants.REPORT_ATTR) or {}).get("run_id"))
        if call is None:
            raise ConfigError(
                "this frame was not made by df.llm.generate in this Python process; repeat the original "
                "call instead: answers are cached, so only the failed rows are sent again"
            )
        template, model, output, errors, options = call
        if options.get("cache") == "refresh":
            options = {**options, "cache": True}  # the refreshed answers are in the cache now
        made = columns.Output.resolve(output, prefix=options.get("prefix", ""), mode=options.get("output_mode", "columns"),
                                      errors=errors, frame_columns=(), usage=options.get("usage", False)).names
        inputs = self._obj.drop(columns=[c for c in made if c in self._obj])
        return inputs.llm.generate(template, model=model, output=output, errors=errors, **options)

    def estimate(self, template: TemplateLike, *, model: str, output: Any = constants.DEFAULT_OUTPUT,
                 mode: str = "online", **options: Any) -> Estimate:
        """A dry run of generate with the same arguments: rows, uncached rows, tokens, cost range, sample prompts.

        Sends nothing and needs no API key. mode="batch" prices at the provider's batch rate.
        """
        return _estimate(self._obj, template, model, output, mode, options)

    def sweep(self, template: TemplateLike | list | dict, *, models: str | list[str], params: dict | None = None,
              repeats: int = 1, output: str = constants.DEFAULT_OUTPUT, score: Any = None,
              max_cost: float | None = None, dry_run: bool = False, **options: Any) -> SweepResult | pd.DataFrame:
        """Run every (template, model, parameter setting, repeat) over the frame, concurrently; score the answers.

        template: one template, a list of them, or a dict name -> template. models: "provider:model" strings.
        params: generation parameter -> list of values (the grid is their product), e.g. {"temperature": [0, 0.7]}.
        repeats: samples per configuration, each with its own seed. score: a function row -> number/bool, or a
        scorer from llmframe.scorers. max_cost caps the whole sweep. Other options are generate's.
        Returns a SweepResult: .table (one row per input row and configuration), .summary(), .plot().
        dry_run=True sends nothing and returns one estimate per configuration (totals in .attrs["llmframe"]).
        """
        _check_options(options)
        return sweep_.sweep(self._obj, template, models=models, params=params, repeats=repeats, output=output,
                            score=score, max_cost=max_cost, options=options, dry_run=dry_run)

    def _plan(self, template, model, output, errors, options) -> pipeline.Run:
        _check_options(options)
        return pipeline.plan(frames.rows_of(self._obj), template, model=model, output=output, errors=errors, **options)


@pd.api.extensions.register_series_accessor("llm")
class SeriesAccessor(_Base):
    """Run a model over every value of a Series; "{}" in the template is the value."""

    def generate(self, template: TemplateLike, *, model: str, output: Any = constants.DEFAULT_OUTPUT,
                 errors: str = "column", **options: Any) -> pd.Series | pd.DataFrame:
        """Answer the template for every value; returns a Series of answers on the same index.

        A structured output= gives a DataFrame of its fields instead (a Series with output_mode="object").
        Failed rows are missing values; the report in .attrs["llmframe"] counts and samples their errors
        (use the DataFrame accessor for a per-row error column). Options are those of DataFrame.llm.generate.
        """
        run = self._plan(template, model, output, errors, options)
        return frames.to_series(self._obj.index, run, run_sync(run.start()))

    async def agenerate(self, template: TemplateLike, *, model: str, output: Any = constants.DEFAULT_OUTPUT,
                        errors: str = "column", **options: Any) -> pd.Series | pd.DataFrame:
        """The async twin of generate."""
        run = self._plan(template, model, output, errors, options)
        return frames.to_series(self._obj.index, run, await run_async(run.start()))

    def estimate(self, template: TemplateLike, *, model: str, output: Any = constants.DEFAULT_OUTPUT,
                 mode: str = "online", **options: Any) -> Estimate:
        """A dry run of generate: see DataFrame.llm.estimate."""
        column = self._column()
        return _estimate(self._obj.to_frame(name=column), template, model, output, mode, options,
                         positional_column=column, output_frame_columns=())

    def _column(self) -> str:
        name = self._obj.name
        return name if isinstance(name, str) and name else _SERIES_COLUMN

    def _plan(self, template, model, output, errors, options) -> pipeline.Run:
        _check_options(options)
        column = self._column()
        frame = self._obj.to_frame(name=column)
        # The Series' own values are not part of the result, so output names cannot clash with them.
        return pipeline.plan(frames.rows_of(frame), template, model=model, output=output, errors=errors, positional_column=column,
                             output_frame_columns=(), **options)
