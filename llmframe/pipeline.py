"""One run, front to back: validate and render (before anything is sent), execute, collect columns."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import constants
from .cache import Store, open_store
from .config import settings
from .errors import ConfigError, RunAborted
from .executor import Counters, Policy, Work, execute
from .progress import Progress, should_show
from .providers import parse_model, provider_class
from .providers.base import Provider
from .request import (
    Request,
    Response,
    content_key,
    generation_params,
    integer_at_least,
    key_prefix,
    positive_number,
)
from .template import Prompts, Template, TemplateLike

_ERROR_MODES = ("column", "raise")


@dataclass
class Run:
    """Everything a run needs, checked and rendered; building one sends nothing."""

    model: str
    frame_index: pd.Index
    prompts: Prompts
    params: dict
    keys: list[str]  # distinct content keys, in first-seen order
    row_to_key: np.ndarray  # row position -> position in keys, -1 for skipped rows
    weights: np.ndarray  # rows served by each key
    provider: Provider
    store: Store | None
    lookup: bool
    policy: Policy
    show_progress: bool
    errors: str
    seconds: float = 0.0  # wall time of the execution, for the report
    counters: Counters = field(default_factory=Counters)

    def work(self) -> Work:
        first_row = np.full(len(self.keys), -1, dtype=np.int64)
        rows = np.flatnonzero(self.row_to_key >= 0)
        # Reversed assignment leaves each key's first row, so a request is built from its first row.
        first_row[self.row_to_key[rows[::-1]]] = rows[::-1]

        def request(j: int) -> Request:
            return Request(self.keys[j], self.prompts.messages(int(first_row[j])), self.params)

        return Work(self.keys, request, self.weights.tolist())

    def start(self) -> Callable[[], Awaitable[list[Response]]]:
        """Open the progress display in the caller's thread and return the run, for the executor's loop.

        The display must be created here: Jupyter sends a widget to the cell of the thread that
        displays it, and the executor's thread belongs to whichever cell first started it.
        """
        progress = Progress(len(self.frame_index), show=self.show_progress, description=self.model)
        progress.advance(len(self.prompts.skipped))
        return lambda: self._execute(progress)

    async def _execute(self, progress: Progress) -> list[Response]:
        start = time.perf_counter()
        try:
            responses, self.counters = await execute(
                self.work(),
                self.provider,
                store=self.store,
                lookup=self.lookup,
                policy=self.policy,
                progress=progress,
                model=self.model,
            )
            return responses
        finally:
            self.seconds = time.perf_counter() - start


def plan(
    frame: pd.DataFrame,
    template: TemplateLike,
    *,
    model: str,
    system: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    stop: str | list[str] | None = None,
    params: dict | None = None,
    missing: str = "skip",
    allow_no_placeholder: bool = False,
    max_prompt_tokens: int | None = None,
    cache: bool | str = True,
    cache_dir: str | None = None,
    max_concurrency: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    max_attempts: int = constants.MAX_ATTEMPTS,
    max_failures_in_a_row: int = constants.BREAKER_FAILURES,
    timeout: float = constants.REQUEST_TIMEOUT_SECONDS,
    progress: bool | None = None,
    errors: str = "column",
    api_key: str | None = None,
    base_url: str | None = None,
    positional_column: str | None = None,
    provider_options: dict | None = None,
) -> Run:
    """Validate every argument and render every row; raise before any request is sent."""
    defaults = settings()
    prefix, model_name = parse_model(model)
    if not (cache is True or cache is False or cache == "refresh"):
        raise ConfigError(f"cache must be True, False or 'refresh', got {cache!r}")
    if errors not in _ERROR_MODES:
        raise ConfigError(f"errors must be one of {_ERROR_MODES}, got {errors!r}")
    concurrency = defaults.max_concurrency if max_concurrency is None else integer_at_least(
        "max_concurrency", max_concurrency, 1
    )
    policy = Policy(
        concurrency=concurrency,
        max_attempts=integer_at_least("max_attempts", max_attempts, 1),
        breaker=integer_at_least("max_failures_in_a_row", max_failures_in_a_row, 1),
        rpm=positive_number("rpm", rpm if rpm is not None else defaults.rpm),
        tpm=positive_number("tpm", tpm if tpm is not None else defaults.tpm),
        max_tokens=max_tokens,
    )
    positive_number("timeout", timeout)
    gen = generation_params(
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, stop=stop, params=params
    )
    compiled = Template(template, list(frame.columns), system=system, positional_column=positional_column)
    prompts = compiled.render(frame, missing=missing, allow_no_placeholder=allow_no_placeholder)
    if max_prompt_tokens is not None:
        prompts.skip_longer_than(integer_at_least("max_prompt_tokens", max_prompt_tokens, 1))
    provider = provider_class(prefix)(
        model_name,
        api_key=api_key,
        base_url=base_url,
        max_concurrency=concurrency,
        timeout=timeout,
        options=provider_options,
    )
    head = key_prefix(prefix, model_name, gen)
    row_keys = [None if row is None else _key_or_skip(head, prompts, i) for i, row in enumerate(prompts.rows)]
    prompts.skipped = dict(sorted(prompts.skipped.items()))
    codes, uniques = pd.factorize(pd.array(row_keys, dtype=object), use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    weights = np.bincount(codes[codes >= 0], minlength=len(uniques))
    store = open_store(cache_dir or defaults.cache_dir, size_limit=defaults.cache_size_limit) if cache is not False else None
    return Run(
        model=model,
        frame_index=frame.index,
        prompts=prompts,
        params=gen,
        keys=list(uniques),
        row_to_key=codes,
        weights=weights,
        provider=provider,
        store=store,
        lookup=cache is True,
        policy=policy,
        show_progress=should_show(defaults.progress if progress is None else progress),
        errors=errors,
    )


def _key_or_skip(head: bytes, prompts: Prompts, i: int) -> str | None:
    """Row i's content key; a row whose text is not valid Unicode is skipped here, never sent."""
    try:
        return content_key(head, prompts.messages_json(i))
    except UnicodeEncodeError:
        prompts.skip(i, "the prompt is not valid Unicode (a lone surrogate); clean the text first, e.g. "
                        "s.str.encode('utf-8', 'replace').str.decode('utf-8')")
        return None


def collect(run: Run, responses: list[Response]) -> tuple[pd.Series, pd.Series, dict]:
    """Fan answers back out to rows: (answers, errors, report), aligned to the input index."""
    n_keys = len(run.keys)
    texts = np.empty(n_keys + 1, dtype=object)  # the extra last slot serves skipped rows (code -1)
    errs = np.empty(n_keys + 1, dtype=object)
    texts[:n_keys] = [r.text if r.error is None else None for r in responses]
    errs[:n_keys] = [r.error if r.error is not None else incomplete(r) for r in responses]
    row_texts = texts[run.row_to_key]
    row_errors = errs[run.row_to_key]
    for i, reason in run.prompts.skipped.items():
        row_errors[i] = f"skipped: {reason}"
    answers = pd.Series(row_texts, index=run.frame_index, dtype="string")
    errors = pd.Series(row_errors, index=run.frame_index, dtype="string")
    return answers, errors, report(run, responses)


def incomplete(response: Response) -> str | None:
    """A note for an answer that is there but not whole: truncated, filtered or empty (never silent)."""
    if response.finish_reason in _COMPLETE:
        return None if response.text else "empty answer"
    return f"incomplete answer: finish_reason={response.finish_reason!r}" + _WHY.get(response.finish_reason, "")


_COMPLETE = frozenset({"stop", "end_turn", "stop_sequence", None})
_WHY = {"length": " (max_tokens reached)", "max_tokens": " (max_tokens reached)", "content_filter": " (filtered)"}


def report(run: Run, responses: list[Response]) -> dict:
    """The run report: plain JSON-serialisable numbers, no secrets."""
    weights = run.weights
    cached = np.fromiter((r.cached for r in responses), dtype=bool, count=len(responses))
    failed = np.fromiter((r.error is not None for r in responses), dtype=bool, count=len(responses))
    sent = [r for r in responses if not r.cached]
    samples = list(dict.fromkeys(r.error for r in responses if r.error is not None))[: constants.ERROR_SAMPLES]
    finish: dict[str, int] = {}
    for r, w in zip(responses, weights.tolist()):
        if r.error is None:
            finish[str(r.finish_reason)] = finish.get(str(r.finish_reason), 0) + w
    counters = run.counters
    return {
        "model": run.model,
        "rows": len(run.frame_index),
        "cached": int(weights[cached].sum()),
        "requests_sent": len(sent),
        "deduplicated": int(weights.sum()) - len(run.keys),
        "failed": int(weights[failed].sum()),
        "skipped": len(run.prompts.skipped),
        "input_tokens": sum(r.input_tokens for r in sent),
        "output_tokens": sum(r.output_tokens for r in sent),
        "seconds": round(run.seconds, 3),
        "attempts": counters.attempts,
        "retries": counters.retries,
        "rate_limited": counters.rate_limited,
        "concurrent_duplicates": counters.duplicates,
        "finish_reasons": finish,
        "errors": samples,
    }


def run_failed(run: Run, report_: dict) -> RunAborted | None:
    """The exception errors="raise" asks for, or None when every row was answered."""
    if run.errors != "raise" or not report_["failed"]:
        return None
    first = report_["errors"][0] if report_["errors"] else "unknown error"
    return RunAborted(
        f"{report_['failed']} of {report_['rows']} rows failed (first error: {first}); "
        "the answers that succeeded are cached, so a re-run sends only the failed rows",
        report_,
    )


def output_columns(frame_columns: pd.Index, output: Hashable, errors: str) -> tuple[Hashable, Hashable | None]:
    """The answer column and the error column names; a clash with the input is an error."""
    if not isinstance(output, str) or not output:
        raise ConfigError(f"output must be a non-empty column name, got {output!r}")
    error_column = f"{output}{constants.ERROR_SUFFIX}" if errors == "column" else None
    for name in (output, error_column):
        if name is not None and name in frame_columns:
            raise ConfigError(f"the frame already has a column {name!r}: pass another output= name, or drop it first")
    return output, error_column


def to_frame(frame: pd.DataFrame, run: Run, responses: list[Response], output: str,
             error_column: str | None) -> pd.DataFrame:
    """A new frame: the input columns, then the answer column and the error column."""
    answers, errors, report_ = collect(run, responses)
    new = {output: answers} if error_column is None else {output: answers, error_column: errors}
    out = frame.assign(**new)
    out.attrs[constants.REPORT_ATTR] = report_
    if failure := run_failed(run, report_):
        raise failure
    return out


def to_series(run: Run, responses: list[Response], output: str) -> pd.Series:
    """A new Series of answers; per-row errors are counted and sampled in the report."""
    answers, _errors, report_ = collect(run, responses)
    answers.name = output
    answers.attrs[constants.REPORT_ATTR] = report_
    if failure := run_failed(run, report_):
        raise failure
    return answers

