"""One run, front to back: validate and render (before anything is sent), execute, collect columns."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import constants
from ..cost import estimate
from ..cost.budget import Budget
from ..stores.diskcache import Store, open_store
from ..config import settings
from ..collect.columns import Output
from ..errors import BudgetExceeded, ConfigError
from ..cost.prices import Pricer
from ..engine.executor import Counters, Policy, Work, execute
from ..engine.progress import Progress, for_run, should_show
from ..providers import parse_model, provider_class
from ..providers.base import Provider
from ..engine.answers import Answers
from .request import (
    Keys,
    Request,
    content_digests,
    distinct,
    generation_params,
    integer_at_least,
    key_prefix,
    positive_number,
)
from .structured import structured_mode, with_prompt
from .rows import Rows
from .template import Prompts, Template, TemplateLike

@dataclass
class Run:
    """Everything a run needs, checked and rendered; building one sends nothing."""

    model: str
    prompts: Prompts
    params: dict
    keys: Keys  # distinct content keys, in first-seen order
    row_to_key: np.ndarray  # row position -> position in keys, -1 for skipped rows
    first_row: np.ndarray  # key position -> the first row with that key, which its request is built from
    weights: np.ndarray  # rows served by each key
    provider: Provider
    store: Store | None
    lookup: bool
    policy: Policy
    show_progress: bool
    output: Output
    pricer: Pricer | None = None
    seconds: float = 0.0  # wall time of the execution, for the report
    counters: Counters = field(default_factory=Counters)
    batch: BatchOptions | None = None  # set when the run goes through the provider's batch API
    schema_prompt: str | None = None  # structured="json_object": the schema, added to each prompt

    def work(self) -> Work:
        def requests(positions) -> list[Request]:
            rows = self.prompts.rows_at(self.first_row[np.asarray(positions, dtype=np.int64)])
            keys = self.keys.take(positions)
            if self.schema_prompt is not None:
                return [Request(key, with_prompt(self.prompts.messages_of(row), self.schema_prompt), self.params)
                        for key, row in zip(keys, rows)]
            return [Request(key, self.prompts.messages_of(row), self.params) for key, row in zip(keys, rows)]

        check = self.output.schema.checker(self.output.mode) if self.output.schema is not None else None
        return Work(self.keys, lambda j: requests([j])[0], self.weights, check, requests)

    def batches(self, progress: Progress):
        """The batch jobs of this run (llmframe.batch.runner.Batches), reporting to progress."""
        from ..batch.runner import Batches

        async def online(work: Work) -> Answers:
            responses, counters = await execute(work, self.provider, store=self.store, lookup=False,
                                                policy=self.policy, progress=Progress(0, show=False), model=self.model)
            counters.invalid += self.counters.invalid  # the batch answers that did not validate stay counted
            self.counters = counters
            return responses

        assert self.batch is not None and self.store is not None
        batches = Batches(self.work(), self.provider, store=self.store, model=self.model,
                          poll_interval=self.batch.poll_interval, progress=progress,
                          online=online if self.batch.retry_online else None, counters=self.counters)
        self.batch.job_id = batches.job.id
        return batches

    def start(self, progress: Progress | None = None) -> Callable[[], Awaitable[Answers]]:
        """Open the progress display in the caller's thread and return the run, for the executor's loop.

        The display must be created here: Jupyter sends a widget to the cell of the thread that
        displays it, and the executor's thread belongs to whichever cell first started it.
        A sweep passes one display shared by all its runs.
        """
        if progress is None:
            progress = for_run(len(self.prompts), show=self.show_progress, description=self.model)
        progress.advance(len(self.prompts.skipped))
        return lambda: self._execute(progress)

    async def _execute(self, progress: Progress) -> Answers:
        start = time.perf_counter()
        if self.batch is not None:
            state = "stopped"
            try:
                batches = self.batches(progress)
                await batches.submit()
                responses = await batches.wait()
                state = "done"
                return responses
            except asyncio.CancelledError:
                state = "interrupted"  # the jobs keep running at the provider: re-running re-attaches
                raise
            finally:
                self.seconds = time.perf_counter() - start
                progress.close(state)
                await self.provider.aclose()
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


@dataclass
class BatchOptions:
    """How a batch run waits, and what it does with requests whose batch line failed."""

    poll_interval: float
    retry_online: bool = False
    job_id: str | None = None  # known once the jobs are submitted


def _batch_options(mode: str, provider: str, requests: int, cache: bool | str, poll_interval: float | None,
                   retry_online: bool) -> BatchOptions | None:
    """None for an online run; else how the batch run polls. ConfigError for a mode that cannot work."""
    if mode not in constants.BATCH_MODES:
        raise ConfigError(f"mode must be one of {constants.BATCH_MODES}, got {mode!r}")
    if not isinstance(retry_online, bool):
        raise ConfigError(f"retry_online must be True or False, got {retry_online!r}")
    if poll_interval is None:
        raw = os.environ.get(constants.BATCH_POLL_ENV_VAR)
        try:
            poll_interval = float(raw) if raw else constants.BATCH_POLL_SECONDS
        except ValueError:
            raise ConfigError(f"{constants.BATCH_POLL_ENV_VAR} must be a number of seconds, got {raw!r}") from None
    interval = positive_number("poll_interval", poll_interval)
    if mode == "online":
        return None
    supported = provider in constants.BATCH_PROVIDERS
    if mode == "auto":
        if not supported or cache is not True or requests < constants.BATCH_AUTO_MIN_REQUESTS:
            return None
    elif not supported:
        raise ConfigError(f"the {provider} provider has no batch API; batch mode supports "
                          f"{list(constants.BATCH_PROVIDERS)}: use mode='online'")
    if cache is not True:
        raise ConfigError(f"mode='batch' keeps its answers and job state in the cache, so it needs cache=True "
                          f"(got cache={cache!r}); to ask again, clear the model's answers with "
                          "llmframe.clear_cache(model=...) first")
    return BatchOptions(interval, retry_online)


def plan(
    frame: Rows,
    template: TemplateLike,
    *,
    model: str,
    output: Any = constants.DEFAULT_OUTPUT,
    prefix: str = "",
    output_mode: str = "columns",
    strict: bool = True,
    structured: str = constants.STRUCTURED_MODES[0],
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
    invalid_retries: int = constants.INVALID_ANSWER_RETRIES,
    timeout: float = constants.REQUEST_TIMEOUT_SECONDS,
    max_wait: float = constants.MAX_WAIT_SECONDS,
    progress: bool | None = None,
    errors: str = "column",
    api_key: str | None = None,
    base_url: str | None = None,
    positional_column: str | None = None,
    output_frame_columns: Sequence | None = None,
    provider_options: dict | None = None,
    mode: str = "online",
    poll_interval: float | None = None,
    retry_online: bool = False,
    usage: bool = False,
    prices: dict | None = None,
    max_cost: float | None = None,
) -> Run:
    """Validate every argument and render every row; raise before any request is sent."""
    defaults = settings()
    provider_name, model_name = parse_model(model)
    if not (cache is True or cache is False or cache == "refresh"):
        raise ConfigError(f"cache must be True, False or 'refresh', got {cache!r}")
    existing = frame.columns if output_frame_columns is None else output_frame_columns
    index_names = frame.index_names if output_frame_columns is None else ()
    for name, flag in (("usage", usage), ("strict", strict)):
        if not isinstance(flag, bool):
            raise ConfigError(f"{name} must be True or False, got {flag!r}")
    out = Output.resolve(output, prefix=prefix, mode=output_mode, errors=errors, frame_columns=existing, usage=usage,
                         index_names=index_names)
    structured = structured_mode(structured, out.schema)
    concurrency = defaults.max_concurrency if max_concurrency is None else integer_at_least(
        "max_concurrency", max_concurrency, 1
    )
    timeout = positive_number("timeout", timeout)
    max_wait = positive_number("max_wait", max_wait)
    gen = generation_params(
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, stop=stop, params=params
    )
    # Checked before rendering, which is the slow part for a large frame.
    attempts = integer_at_least("max_attempts", max_attempts, 1)
    breaker = integer_at_least("max_failures_in_a_row", max_failures_in_a_row, 1)
    retries = integer_at_least("invalid_retries", invalid_retries, 0)
    rpm = positive_number("rpm", rpm if rpm is not None else defaults.rpm)
    tpm = positive_number("tpm", tpm if tpm is not None else defaults.tpm)
    compiled = Template(template, list(frame.columns), system=system, positional_column=positional_column)
    prompts = compiled.render(frame, missing=missing, allow_no_placeholder=allow_no_placeholder)
    if max_prompt_tokens is not None:
        max_prompt_tokens = integer_at_least("max_prompt_tokens", max_prompt_tokens, 1)
    provider = provider_class(provider_name)(
        model_name,
        api_key=api_key,
        base_url=base_url,
        max_concurrency=concurrency,
        timeout=timeout,
        options=provider_options,
    )
    provider.check_params(gen)
    schema_key = out.schema.key_material() if out.schema is not None else None
    if schema_key is not None and not strict and provider.strict_outputs:
        schema_key = {**schema_key, "strict": False}  # a different request; strict=True keys stay as they were
    if structured != constants.STRUCTURED_MODES[0]:  # another request: JSON mode, the schema in the prompt
        schema_key = {**schema_key, "structured": structured}
    head = key_prefix(provider_name, model_name, gen, schema_key, provider.endpoint)
    digests, valid = _digests(head, prompts, max_prompt_tokens)
    codes, first_row = distinct(digests, valid)
    weights = np.bincount(codes[codes >= 0], minlength=len(first_row))
    store = open_store(cache_dir or defaults.cache_dir, size_limit=defaults.cache_size_limit) if cache is not False else None
    batch = _batch_options(mode, provider_name, len(first_row), cache, poll_interval, retry_online)
    # Prices are loaded only where a cost is asked for: the price database costs ~17 MB to hold.
    priced = usage or prices is not None or max_cost is not None
    pricer = Pricer.for_run(model, prices, warn=usage, batch=batch is not None) if priced else None
    budget = Budget.for_run(max_cost, pricer)
    policy = Policy(
        concurrency=concurrency,
        max_attempts=attempts,
        max_wait=max_wait,
        breaker=breaker,
        rpm=rpm,
        tpm=tpm,
        max_tokens=max_tokens,
        invalid_retries=retries,
        price=(lambda r: pricer.cost(r.input_tokens, r.output_tokens, r.cached_input_tokens))
        if pricer is not None and pricer.known else None,
        budget=budget,
        estimate=estimate.request_cost(pricer, provider_name, max_tokens) if budget is not None else None,
    )
    run = Run(
        model=model,
        prompts=prompts,
        params={**gen, **provider.output_params(out.schema, strict=strict, structured=structured)}
        if out.schema is not None else gen,
        keys=Keys(digests if len(first_row) == len(digests) else digests[first_row]),  # all distinct: no copy
        row_to_key=codes,
        first_row=first_row,
        weights=weights,
        provider=provider,
        store=store,
        lookup=cache is True,
        policy=policy,
        show_progress=should_show(defaults.progress if progress is None else progress),
        output=out,
        batch=batch,
        pricer=pricer,
        schema_prompt=out.schema.prompt() if structured == "json_object" else None,
    )
    if batch is not None and budget is not None:
        _check_batch_budget(run, budget)
    return run


def _check_batch_budget(run: Run, budget: Budget) -> None:
    """A batch job is paid whole once submitted: one whose estimate could exceed max_cost is not submitted."""
    guess = estimate.estimate(run, mode="batch")
    if guess.cost is not None and guess.cost[1] > budget.max_cost:
        raise BudgetExceeded(
            f"the batch job would cost up to ${guess.cost[1]:.4g} (estimate ${guess.cost[0]:.4g} to "
            f"${guess.cost[1]:.4g} for {guess.uncached_requests} requests), over max_cost={budget.max_cost}; "
            "nothing was submitted. Raise max_cost, set max_tokens for a firmer bound, or run fewer rows",
            {"model": run.model, "mode": "batch", "estimate": guess.to_dict()},
        )


def _digests(head: bytes, prompts: Prompts, max_prompt_tokens: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Every row's content key as a raw digest, and which rows are sent; rendered a chunk at a time.

    Rows whose prompt is too long, or not valid Unicode, are skipped here: refused, never sent.
    """
    digests = np.zeros((len(prompts), 2), dtype=np.uint64)
    limit = None if max_prompt_tokens is None else max_prompt_tokens * constants.CHARS_PER_TOKEN
    for positions in prompts.chunks():
        rows = prompts.rows_at(positions)
        if limit is not None:
            keep = [k for k, row in enumerate(rows) if prompts.chars_of(row) <= limit]
            for k in sorted(set(range(len(rows))) - set(keep)):
                tokens = prompts.chars_of(rows[k]) // constants.CHARS_PER_TOKEN
                prompts.skip(int(positions[k]), f"prompt too long: about {tokens} tokens > max_prompt_tokens={max_prompt_tokens}")
            positions, rows = positions[keep], [rows[k] for k in keep]
        texts = prompts.json_of(rows)
        try:
            raw = b"".join(content_digests(head, texts))
        except UnicodeEncodeError:
            good = []
            for k, text in enumerate(texts):
                try:
                    text.encode()
                    good.append(k)
                except UnicodeEncodeError:
                    prompts.skip(int(positions[k]), "the prompt is not valid Unicode (a lone surrogate); clean the "
                                 "text first, e.g. s.str.encode('utf-8', 'replace').str.decode('utf-8')")
            positions = positions[good]
            raw = b"".join(content_digests(head, (texts[k] for k in good)))
        digests[positions] = np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2)
    valid = np.ones(len(prompts), dtype=bool)
    if prompts.skipped:
        valid[np.fromiter(prompts.skipped, dtype=np.int64, count=len(prompts.skipped))] = False
    return digests, valid
