"""What every face shares: the verbs, their keywords (one per option), planning, the report and retry_failed.

A face subclasses RowVerbs (a Series' values) or FrameVerbs (a frame's rows) and says what its rows are
(_rows) and what a finished run gives back (_result); tests/test_options.py keeps each signature equal to
llmframe.options' table, so tab completion, help() and inspect.signature show every option.
"""

from __future__ import annotations

import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import planning
from .. import constants, options
from ..batch import BatchJob
from ..engine.background import OnlineJob
from ..collect import columns
from ..collect.arrays import Column
from ..collect.report import Report
from ..cost import estimate as estimate_
from ..cost.budget import Budget
from ..cost.estimate import Estimate
from ..cost.meter import CostMeter
from ..engine import run as engine
from ..engine.answers import Answers
from ..engine.loop import run_async, run_sync
from ..engine.outcome import Outcome
from ..errors import ConfigError
from ..options import FACE_ONLY, OPTIONS, PASSED_ON, check_names, documented, keywords, template_only_positional
from ..plan.build import Plan
from ..plan.output import Output
from ..plan.rows import Rows
from ..plan.template import TemplateLike
from ..providers.base import Provider

if TYPE_CHECKING:
    from ..apps.sweep import SweepResult

# Run id -> the call that made a frame, so retry_failed can repeat it. In memory only: it holds the key.
_CALLS: OrderedDict[str, tuple] = OrderedDict()
# id(frame) -> (a weak reference to it, its report), for frames that have no attrs to keep it (Polars').
_REPORTS: OrderedDict[int, tuple[weakref.ref, Report]] = OrderedDict()


def plan_of(rows: Rows, template: TemplateLike, given: dict, memo: bool = False) -> Plan:
    """The one call through which every face plans a run (model= resolved by faces/planning.py); the face's own
    options (dtype_backend=) stay with the face: they are neither planned nor part of the cache key."""
    return planning.plan(rows, template, memo=memo, **{k: v for k, v in given.items() if k not in FACE_ONLY})


def _placeholder_key(model: Any) -> str | None:
    """The API key a plan that sends nothing checks with: none for a Provider instance, which carries its own."""
    return None if isinstance(model, Provider) else constants.ESTIMATE_API_KEY


def generate_within(frame: Any, template: TemplateLike, given: dict, budget: Budget) -> Any:
    """frame.llm.generate(template, **given), its requests reserved from and settled into a max_cost budget
    shared with other calls: `llmframe run`'s chunks draw on one budget, as a single call's rows do."""
    verbs, call = frame.llm, (template, keywords(given))
    plan = verbs._plan(*call)
    return verbs._result(plan, run_sync(engine.start(plan, meter=CostMeter.for_plan(plan, budget))), call)


def remember(report: Report, call: tuple) -> Report:
    """Give the report a run id that retry_failed finds the call by."""
    run_id = uuid.uuid4().hex
    report["run_id"] = run_id
    _CALLS[run_id] = call
    while len(_CALLS) > constants.REMEMBERED_CALLS:
        _CALLS.popitem(last=False)
    return report


def keep_report(frame: Any, report: Report) -> None:
    """Keep the report with a frame that has no attrs, for frame.llm.report (as long as the frame lives)."""
    _REPORTS[id(frame)] = (weakref.ref(frame), report)
    while len(_REPORTS) > constants.REMEMBERED_CALLS:
        _REPORTS.popitem(last=False)


def kept_report(frame: Any) -> Report | None:
    """The report keep_report kept with this very frame, or None (a frame's id is reused once it is gone)."""
    ref, report = _REPORTS.get(id(frame), (None, None))
    return report if ref is not None and ref() is frame else None


def empty_columns(rows: Rows, template: TemplateLike, given: dict) -> tuple[Output, dict[str, Column]]:
    """The output and the columns a run of no rows gives (names and Arrow types), for a lazy face's schema.

    Planning checks every argument, as a run would; nothing is executed or sent, so no API key is needed.
    """
    given = {**given, "mode": constants.BATCH_MODES[0], "progress": False,
             "api_key": given.get("api_key") or _placeholder_key(given["model"])}
    plan = plan_of(rows, template, given)
    return plan.output, columns.new_columns(plan, Answers.of([]))


class Generate:
    """generate alone, for the lazy faces (a Polars expression, a LazyFrame), whose _run returns what runs later."""

    def __init__(self, obj):
        self._obj = obj

    @template_only_positional
    @documented
    def generate(self, template: TemplateLike, *, model: str | Provider, output: Any = constants.DEFAULT_OUTPUT,
                 errors: str = constants.ERROR_MODES[0], prefix: str = "", output_mode: str = constants.OUTPUT_MODES[0],
                 strict: bool = True, structured: str = constants.STRUCTURED_MODES[0],
                 invalid_retries: int = constants.INVALID_ANSWER_RETRIES,
                 dtype_backend: str | None = None, usage: bool = False,
                 system: str | None = None, temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
                 reasoning_effort: str | None = None,
                 params: dict | None = None, missing: str = constants.MISSING_MODES[0],
                 allow_no_placeholder: bool = False, max_prompt_tokens: int | None = None,
                 tools: list | None = None, max_turns: int = constants.TOOL_MAX_TURNS,
                 tool_timeout: float = constants.TOOL_TIMEOUT_SECONDS, transcript: bool = False,
                 tools_version: str | None = None,
                 cache: bool | str = True,
                 cache_dir: str | None = None, max_concurrency: int | None = None, rpm: float | None = None,
                 tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
                 max_failures_in_a_row: int = constants.BREAKER_FAILURES,
                 timeout: float = constants.REQUEST_TIMEOUT_SECONDS, max_wait: float = constants.MAX_WAIT_SECONDS,
                 progress: bool | None = None, api_key: str | None = None, base_url: str | None = None,
                 provider_options: dict | None = None, api: str | None = None, mode: str = constants.BATCH_MODES[0],
                 poll_interval: float | None = None, retry_online: bool = False, prices: dict | None = None,
                 max_cost: float | None = None, max_image_side: int | None = None, fetch_urls: bool = False,
                 prompt_cache: bool = True, rows_per_request: int = 1,
                 cascade: list | None = None, calibrate: int = 0, context: str | None = None,
                 on_row: Callable | None = None, on_progress: Callable | None = None,
                 on_done: Callable | None = None,
                 **unknown: Any) -> Any:
        """Answer the template for every row; returns a new frame with the answer (and error) columns.

        template: "{column}" string, list of {"role", "content"} messages, or function row-dict -> prompt.
        On a Series, "{}" is the value and the answers come back as a Series on the same index (a
        structured output= gives a frame of its fields); failed rows are missing values, and the run report
        (llmframe.last_report(); a frame's out.llm.report) counts and samples their errors (use a DataFrame for
        an error column). A Polars expression or LazyFrame runs when the query is collected.
        """
        return self._run(self._call(template, locals()))

    def _run(self, call: tuple) -> Any:
        """What generate gives for this call (template, keywords)."""
        raise NotImplementedError

    # The dtype_backend= values this face builds its frames with (llmframe.options.FACE_ONLY); None: refused
    # with what the face says instead, checked before anything is planned or sent.
    dtype_backends: tuple | None = constants.DTYPE_BACKENDS
    no_dtype_backend = ""

    def _call(self, template: TemplateLike, values: dict) -> tuple:
        """The call (template, keywords) of a verb's locals(): generate's keywords, the face's own checked here."""
        given = keywords(values)
        check_backend(self, given.get("dtype_backend"))
        return template, given


def check_backend(face: Any, backend: Any) -> None:
    """ConfigError for a dtype_backend= the face does not build its frames with (Polars' faces: any)."""
    backend = options.checked({"dtype_backend": backend})["dtype_backend"]
    if backend is not None and backend not in (face.dtype_backends or ()):
        raise ConfigError(f"dtype_backend={backend!r}: {face.no_dtype_backend}")


class RowVerbs(Generate):
    """generate, agenerate and estimate over a face's rows; the subclasses say what a row is and what comes back."""

    @template_only_positional
    @documented
    async def agenerate(self, template: TemplateLike, *, model: str | Provider, output: Any = constants.DEFAULT_OUTPUT,
                        errors: str = constants.ERROR_MODES[0], prefix: str = "",
                        output_mode: str = constants.OUTPUT_MODES[0], strict: bool = True,
                        structured: str = constants.STRUCTURED_MODES[0],
                        invalid_retries: int = constants.INVALID_ANSWER_RETRIES,
                        dtype_backend: str | None = None, usage: bool = False,
                        system: str | None = None, temperature: float | None = None, top_p: float | None = None,
                        max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
                        reasoning_effort: str | None = None,
                        params: dict | None = None, missing: str = constants.MISSING_MODES[0],
                        allow_no_placeholder: bool = False, max_prompt_tokens: int | None = None,
                        tools: list | None = None, max_turns: int = constants.TOOL_MAX_TURNS,
                        tool_timeout: float = constants.TOOL_TIMEOUT_SECONDS, transcript: bool = False,
                        tools_version: str | None = None,
                        cache: bool | str = True, cache_dir: str | None = None, max_concurrency: int | None = None,
                        rpm: float | None = None, tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
                        max_failures_in_a_row: int = constants.BREAKER_FAILURES,
                        timeout: float = constants.REQUEST_TIMEOUT_SECONDS,
                        max_wait: float = constants.MAX_WAIT_SECONDS, progress: bool | None = None,
                        api_key: str | None = None, base_url: str | None = None, provider_options: dict | None = None,
                        api: str | None = None,
                        mode: str = constants.BATCH_MODES[0], poll_interval: float | None = None,
                        retry_online: bool = False, prices: dict | None = None, max_cost: float | None = None,
                        max_image_side: int | None = None, fetch_urls: bool = False,
                 prompt_cache: bool = True, rows_per_request: int = 1,
                        cascade: list | None = None, calibrate: int = 0, context: str | None = None,
                        on_row: Callable | None = None, on_progress: Callable | None = None,
                        on_done: Callable | None = None,
                        **unknown: Any) -> Any:
        """The async twin of generate, for code that already runs an event loop."""
        call = self._call(template, locals())
        if call[1].get("cascade") is not None:
            from ..ops import cascade

            return await cascade.arun(self, call[0], dict(call[1]), call)
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
                 reasoning_effort: str | None = None,
                 params: dict | None = None, missing: str = constants.MISSING_MODES[0],
                 allow_no_placeholder: bool = False, max_prompt_tokens: int | None = None,
                 tools: list | None = None, max_turns: int = constants.TOOL_MAX_TURNS,
                 tool_timeout: float = constants.TOOL_TIMEOUT_SECONDS, transcript: bool = False,
                 tools_version: str | None = None,
                 cache: bool | str = True,
                 cache_dir: str | None = None, max_concurrency: int | None = None, rpm: float | None = None,
                 tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
                 max_failures_in_a_row: int = constants.BREAKER_FAILURES,
                 timeout: float = constants.REQUEST_TIMEOUT_SECONDS, max_wait: float = constants.MAX_WAIT_SECONDS,
                 progress: bool | None = None, api_key: str | None = None, base_url: str | None = None,
                 provider_options: dict | None = None, api: str | None = None, mode: str = constants.BATCH_MODES[0],
                 poll_interval: float | None = None, retry_online: bool = False, prices: dict | None = None,
                 max_cost: float | None = None, max_image_side: int | None = None, fetch_urls: bool = False,
                 prompt_cache: bool = True, rows_per_request: int = 1,
                 cascade: list | None = None, calibrate: int = 0, context: str | None = None,
                 on_row: Callable | None = None, on_progress: Callable | None = None,
                 on_done: Callable | None = None,
                 **unknown: Any) -> Estimate:
        """A dry run of generate with the same arguments: rows, uncached rows, tokens, cost range, sample prompts.

        Sends nothing and needs no API key.
        """
        given = keywords(locals())
        if mode not in estimate_.MODES:
            raise ConfigError(f"mode must be one of {estimate_.MODES}, got {mode!r}")
        # Nothing is sent, so no key is needed; a placeholder lets the plan check everything else (a Provider
        # instance carries its own). mode= says which prices to use here: the plan is an online one, as it always was.
        given.update(mode=constants.BATCH_MODES[0], api_key=api_key or _placeholder_key(model), progress=False)
        if cascade is not None:
            from ..ops import cascade as cascade_

            return cascade_.face_estimate(self, template, given, mode, _placeholder_key)
        made = engine.estimate(self._plan(template, given), mode=mode)
        if made.uncached_rows:
            made.not_cached_because = self._why(template, given, made.uncached_rows)
        return made

    def _why(self, template, given: dict, uncached: int) -> list[str] | None:
        """What differs from the last run of this call (the run memo's record), rows counted as the estimate did."""
        rows, extra = self._rows()
        why = planning.why_not_cached(rows, template, **{k: v for k, v in {**given, **extra}.items()
                                                           if k not in FACE_ONLY})
        if why is None or why == [constants.MEMO_NO_EARLIER_RUN]:  # nothing to compare with: nothing to say
            return None
        return [f"rows: {uncached:,} new or changed rows" if w.startswith("rows:") else w for w in why]

    def _run(self, call: tuple) -> Any:
        """Plan, execute and collect one call now (a lazy face returns what runs it later instead)."""
        if call[1].get("cascade") is not None:
            from ..ops import cascade

            return cascade.run(self, call[0], dict(call[1]), call)
        plan = self._plan(*call, memo=True)
        return self._result(plan, run_sync(engine.start(plan)), call)

    def _plan(self, template, given: dict, memo: bool = False) -> Plan:
        rows, extra = self._rows()
        return plan_of(rows, template, {**given, **extra}, memo)

    @staticmethod
    def _report_of(result: Any) -> Report | None:
        """The run report of a result this face returned (attrs where the library has them, else kept beside)."""
        attrs = getattr(result, "attrs", None)
        return attrs.get(constants.REPORT_ATTR) if isinstance(attrs, dict) else kept_report(result)

    def _plan_rows(self, rows: Rows, template, given: dict) -> Plan:
        """A plan over other rows than the face's own (a cascade's later stages: some of them)."""
        return plan_of(rows, template, given)

    def _rows(self) -> tuple[Rows, dict]:
        """The rows the plan renders from, and plan()'s keywords that say how to read them."""
        raise NotImplementedError

    def _result(self, plan: Plan, outcome: Outcome, call: tuple) -> Any:
        """The face's own result of a finished run."""
        raise NotImplementedError


class FrameVerbs(RowVerbs):
    """A frame's verbs: RowVerbs' and submit, retry_failed, sweep and the report of the run that made it."""

    @template_only_positional
    @documented(mode='`"batch"`: the provider\'s batch API; `"online"`: a background run on llmframe\'s loop; '
                     '`"auto"`: the batch API where the provider has one and the call is large')
    def submit(self, template: TemplateLike, *, model: str | Provider, output: Any = constants.DEFAULT_OUTPUT,
               errors: str = constants.ERROR_MODES[0], prefix: str = "", output_mode: str = constants.OUTPUT_MODES[0],
               strict: bool = True, structured: str = constants.STRUCTURED_MODES[0],
               invalid_retries: int = constants.INVALID_ANSWER_RETRIES,
               dtype_backend: str | None = None, usage: bool = False,
               system: str | None = None, temperature: float | None = None, top_p: float | None = None,
               max_tokens: int | None = None, seed: int | None = None, stop: str | list[str] | None = None,
               reasoning_effort: str | None = None,
               params: dict | None = None, missing: str = constants.MISSING_MODES[0],
               allow_no_placeholder: bool = False, max_prompt_tokens: int | None = None,
               tools: list | None = None, max_turns: int = constants.TOOL_MAX_TURNS,
               tool_timeout: float = constants.TOOL_TIMEOUT_SECONDS, transcript: bool = False,
               tools_version: str | None = None,
               cache: bool | str = True,
               cache_dir: str | None = None, max_concurrency: int | None = None, rpm: float | None = None,
               tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
               max_failures_in_a_row: int = constants.BREAKER_FAILURES,
               timeout: float = constants.REQUEST_TIMEOUT_SECONDS, max_wait: float = constants.MAX_WAIT_SECONDS,
               progress: bool | None = None, api_key: str | None = None, base_url: str | None = None,
               provider_options: dict | None = None, api: str | None = None, mode: str = constants.BATCH_MODES[1],
               poll_interval: float | None = None, retry_online: bool = False, prices: dict | None = None,
               max_cost: float | None = None, max_image_side: int | None = None, fetch_urls: bool = False,
                 prompt_cache: bool = True, rows_per_request: int = 1,
               cascade: list | None = None, calibrate: int = 0, context: str | None = None,
               on_row: Callable | None = None, on_progress: Callable | None = None,
               on_done: Callable | None = None,
               **unknown: Any) -> BatchJob | OnlineJob:
        """Start the run and return at once: generate's arguments; mode="batch" (the default) or "online".

        The handle: job.status(), job.wait() (blocks, with a progress bar; Ctrl-C stops only the waiting),
        job.result() (the frame generate would return), job.cancel(); llmframe.jobs() lists them.
        mode="batch" submits to the provider's batch API: submit again with the same arguments re-attaches
        to the same jobs. mode="online" runs on llmframe's background loop while the caller goes on;
        job.result(partial=True) is what finished so far, and re-running the call resumes from the cache.
        """
        call = self._call(template, locals())
        held = type(self)(self._held())  # the rows as they are now: later edits do not reach the job
        plan = held._plan(*call)

        def finish(outcome: Outcome) -> Any:
            return held._result(plan, outcome, call)

        return BatchJob(plan, finish) if plan.batch is not None else OnlineJob(plan, finish)

    @property
    def report(self) -> Report | None:
        """The run report of the call that made this frame (None for a frame llmframe did not make)."""
        return self._report()

    def retry_failed(self) -> Any:
        """Repeat the generate (or embed) call that made this frame: failed rows are sent again, the rest come from
        cache."""
        call = _CALLS.get((self._report() or {}).get("run_id"))
        if call is None:
            raise ConfigError(
                "this frame was not made by df.llm.generate or df.llm.embed in this Python process; repeat the "
                "original call instead: answers are cached, so only the failed rows are sent again"
            )
        if len(call) == 4:  # embed's: (template, keywords, "embed", the columns it made)
            template, given, _, made = call
            return self._without(list(made)).llm.embed(template, **given)
        template, given = call
        if given["cache"] == "refresh":
            given = {**given, "cache": True}  # the refreshed answers are in the cache now
        made = Output.resolve(given["output"], prefix=given["prefix"], mode=given["output_mode"],
                              errors=given["errors"], frame_columns=(), usage=given["usage"]).names
        return self._without(made).llm.generate(template, **given)

    # Not generate's keywords: params= and max_cost= mean a grid and the whole sweep's cap here, output= is a
    # text column, and usage= and errors= are the sweep's own; the rest are generate's, checked by name.
    @template_only_positional
    @documented(names=[o.name for o in OPTIONS if o.name in PASSED_ON - {"params", "max_cost", "usage"}])
    def sweep(self, template: TemplateLike | list | dict, *, models: str | list[str], params: dict | None = None,
              repeats: int = 1, output: str = constants.DEFAULT_OUTPUT, score: Any = None,
              max_cost: float | None = None, dry_run: bool = False, **options: Any) -> SweepResult | Any:
        """Run every (template, model, parameter setting, repeat) over the frame, concurrently; score the answers.

        template: one template, a list of them, or a dict name -> template. models: "provider:model" strings.
        params: generation parameter -> list of values (the grid is their product), e.g. {"temperature": [0, 0.7]}.
        repeats: samples per configuration, each with its own seed. score: a function row -> number/bool, or a
        scorer from llmframe.scorers. max_cost caps the whole sweep. options: generate's, below.
        Returns a SweepResult: .table (one row per input row and configuration), .summary(), .plot().
        dry_run=True sends nothing and returns one estimate per configuration (totals in .attrs["llmframe"]).
        """
        from ..apps import sweep as sweep_  # pandas: imported by the sweeps that use it, not by every face

        check_names(options)
        return sweep_.sweep(self._sweep_frame(), template, models=models, params=params, repeats=repeats,
                            output=output, score=score, max_cost=max_cost, options=options, dry_run=dry_run)

    def _report(self) -> Report | None:
        """The report stored with this frame, or None."""
        raise NotImplementedError

    def _without(self, names: list[str]) -> Any:
        """This frame without those of the named columns it has."""
        raise NotImplementedError

    def _sweep_frame(self) -> Any:
        """The frame apps.sweep runs over (a pandas DataFrame)."""
        raise NotImplementedError

    def _held(self) -> Any:
        """This frame as a submitted job keeps it: one that later edits of the caller's frame leave as it is."""
        return self._obj  # immutable frames (Polars') as they are
