"""Planning: validate every argument and render and key every row, before anything is sent.

A Plan is frozen and pure: building one opens no store, makes no provider or SDK client and sends
nothing. The engine executes it (engine.run) and returns an Outcome; the collector turns both into columns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import constants, options
from ..collect.columns import Output
from ..config import settings
from ..cost.budget import check_max_cost
from ..cost.prices import Pricer
from ..errors import ConfigError
from ..providers import parse_model, provider_class
from ..providers.base import Provider
from .request import (
    Keys,
    Request,
    content_digests,
    distinct,
    generation_params,
    key_prefix,
    positive_number,
)
from .structured import structured_mode, with_prompt
from .rows import Rows
if TYPE_CHECKING:
    from .embed import Embedding
from .template import Prompts, Template, TemplateLike

Check = Callable[[str | None], tuple[Any, str | None]]  # answer text -> (parsed value, None) or (None, problem)


@dataclass(slots=True)
class Work:
    """The distinct requests of one run: their keys, how to build each, how many rows each serves,
    and, for structured outputs, how to check an answer."""

    keys: Sequence[str]
    request: Callable[[int], Request]
    weights: Sequence[int]
    check: Check | None = None
    requests: Callable[[Sequence[int]], list[Request]] | None = None  # many at once: rendered as a chunk
    pack: tuple[int, int] | None = None  # embeddings: the most (inputs, estimated tokens) one request carries
    settings: dict | None = None  # embeddings: what every request asks (dimensions, task type, truncation)

    def build(self, positions: Sequence[int]) -> list[Request]:
        """The requests at these positions."""
        if self.requests is not None:
            return self.requests(positions)
        return [self.request(j) for j in positions]


@dataclass(frozen=True, slots=True)
class Policy:
    """How a run sends: concurrency, retries, the circuit breaker and the client-side rate limits."""

    concurrency: int
    max_attempts: int = constants.MAX_ATTEMPTS
    max_wait: float = constants.MAX_WAIT_SECONDS  # seconds a run waits on the server's word (see ratelimit.Patience)
    breaker: int = constants.BREAKER_FAILURES
    rpm: float | None = None
    tpm: float | None = None
    max_tokens: int | None = None  # for the TPM estimate of a request before it is sent
    invalid_retries: int = constants.INVALID_ANSWER_RETRIES  # re-asks for answers that do not validate


@dataclass(frozen=True)
class ProviderSpec:
    """The provider a plan's requests go to, and what the engine makes it with; the key is never shown."""

    name: str  # the prefix of model=, e.g. "openai"
    model: str  # the model's own name
    endpoint: str | None  # as it is in the keys: None for the official one
    max_concurrency: int
    timeout: float
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    options: dict | None = None  # provider_options=
    instance: Provider | None = None  # a Provider passed as model=, used as it is


@dataclass(frozen=True)
class BatchOptions:
    """How a batch run waits, and what it does with requests whose batch line failed."""

    poll_interval: float
    retry_online: bool = False


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything a run needs, checked, rendered and keyed; building one sends and opens nothing."""

    model: str
    provider: ProviderSpec
    prompts: Prompts
    params: dict
    keys: Keys  # distinct content keys, in first-seen order
    row_to_key: np.ndarray  # row position -> position in keys, -1 for skipped rows
    first_row: np.ndarray  # key position -> the first row with that key, which its request is built from
    weights: np.ndarray  # rows served by each key
    cache: bool | str  # True, False or "refresh"
    cache_dir: str | None
    cache_size_limit: int
    policy: Policy
    progress: bool | None  # None: shown where a person is watching (engine.progress.should_show)
    output: Output
    pricer: Pricer | None = None  # set where a cost is asked for (usage=, prices=, max_cost=)
    max_cost: float | None = None
    batch: BatchOptions | None = None  # set when the run goes through the provider's batch API
    schema_prompt: str | None = None  # structured="json_object": the schema, added to each prompt
    embedding: Embedding | None = None  # set for df.llm.embed's runs (plan.embed): answers are vectors

    @property
    def lookup(self) -> bool:
        """True when cached answers are read (cache=True); "refresh" only writes."""
        return self.cache is True

    def work(self) -> Work:
        """The plan's distinct requests, built on demand a chunk at a time."""
        def requests(positions) -> list[Request]:
            rows = self.prompts.rows_at(self.first_row[np.asarray(positions, dtype=np.int64)])
            keys = self.keys.take(positions)
            if self.schema_prompt is not None:
                return [Request(key, with_prompt(self.prompts.messages_of(row), self.schema_prompt), self.params)
                        for key, row in zip(keys, rows)]
            return [Request(key, self.prompts.messages_of(row), self.params) for key, row in zip(keys, rows)]

        check = self.output.schema.checker(self.output.mode) if self.output.schema is not None else None
        embedding = self.embedding
        if embedding is None:
            return Work(self.keys, lambda j: requests([j])[0], self.weights, check, requests)
        return Work(self.keys, lambda j: requests([j])[0], self.weights, None, requests,
                    (embedding.max_inputs, embedding.max_tokens), embedding.settings)


def _batch_options(mode: str, provider: type[Provider] | Provider, requests: int, cache: bool | str,
                   poll_interval: float | None, retry_online: bool) -> BatchOptions | None:
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
    supported = provider.batch_adapter is not None
    if mode == "auto":
        if not supported or cache is not True or requests < constants.BATCH_AUTO_MIN_REQUESTS:
            return None
    elif not supported:
        raise ConfigError(f"the {provider.name} provider has no batch API: use mode='online'")
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
    output_mode: str = constants.OUTPUT_MODES[0],
    strict: bool = True,
    structured: str = constants.STRUCTURED_MODES[0],
    system: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    stop: str | list[str] | None = None,
    params: dict | None = None,
    missing: str = constants.MISSING_MODES[0],
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
    errors: str = constants.ERROR_MODES[0],
    api_key: str | None = None,
    base_url: str | None = None,
    positional_column: str | None = None,
    output_frame_columns: Sequence | None = None,
    provider_options: dict | None = None,
    mode: str = constants.BATCH_MODES[0],
    poll_interval: float | None = None,
    retry_online: bool = False,
    usage: bool = False,
    prices: dict | None = None,
    max_cost: float | None = None,
) -> Plan:
    """Validate every argument and render every row; raise before any request is sent."""
    defaults = settings()
    provider_name, model_name = parse_model(model)
    checked = options.checked(locals())  # every option through its check in the table, before anything else
    timeout, max_wait, max_prompt_tokens = checked["timeout"], checked["max_wait"], checked["max_prompt_tokens"]
    existing = frame.columns if output_frame_columns is None else output_frame_columns
    index_names = frame.index_names if output_frame_columns is None else ()
    out = Output.resolve(output, prefix=prefix, mode=output_mode, errors=errors, frame_columns=existing, usage=usage,
                         index_names=index_names)
    structured = structured_mode(structured, out.schema)
    concurrency = defaults.max_concurrency if max_concurrency is None else checked["max_concurrency"]
    gen = generation_params(
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, stop=stop, params=params
    )
    attempts, breaker, retries = checked["max_attempts"], checked["max_failures_in_a_row"], checked["invalid_retries"]
    rpm = checked["rpm"] if rpm is not None else defaults.rpm
    tpm = checked["tpm"] if tpm is not None else defaults.tpm
    compiled = Template(template, list(frame.columns), system=system, positional_column=positional_column)
    prompts = compiled.render(frame, missing=missing, allow_no_placeholder=allow_no_placeholder)
    # The class alone (or the Provider instance passed as model=): the engine makes the provider, after planning.
    instance = model if isinstance(model, Provider) else None
    kind = instance if instance is not None else provider_class(provider_name)
    model = f"{provider_name}:{model_name}"  # a Provider instance's too: the report's and the cache's name for it
    kind.check_params(gen)
    endpoint = instance.endpoint if instance is not None else kind.endpoint_for(base_url)
    if constants.EMBEDDING_KEY not in gen:  # plan.embed plans embedding runs through here too
        kind.chat_model(model_name, endpoint=endpoint)
    head = key_prefix(provider_name, model_name, gen, _schema_key(out, kind, strict, structured), endpoint)
    digests, valid = _digests(head, prompts, max_prompt_tokens)
    codes, first_row = distinct(digests, valid)
    batch = _batch_options(mode, kind, len(first_row), cache, poll_interval, retry_online)
    # Prices are loaded only where a cost is asked for: the price database costs ~17 MB to hold.
    priced = usage or prices is not None or max_cost is not None
    pricer = Pricer.for_run(model, prices, warn=usage, batch=batch is not None) if priced else None
    max_cost = check_max_cost(max_cost, pricer)
    if out.schema is not None:
        gen = {**gen, **kind.output_params(out.schema, strict=strict, structured=structured)}
    return Plan(
        model=model,
        provider=ProviderSpec(provider_name, model_name, endpoint, concurrency, timeout, api_key=api_key,
                              base_url=base_url, options=provider_options, instance=instance),
        prompts=prompts,
        params=gen,
        keys=Keys(digests if len(first_row) == len(digests) else digests[first_row]),  # all distinct: no copy
        row_to_key=codes,
        first_row=first_row,
        weights=np.bincount(codes[codes >= 0], minlength=len(first_row)),
        cache=cache,
        cache_dir=cache_dir or defaults.cache_dir,
        cache_size_limit=defaults.cache_size_limit,
        policy=Policy(concurrency, attempts, max_wait, breaker, rpm, tpm, max_tokens, retries),
        progress=defaults.progress if progress is None else progress,
        output=out,
        pricer=pricer,
        max_cost=max_cost,
        batch=batch,
        schema_prompt=out.schema.prompt() if structured == "json_object" else None,
    )


def _schema_key(out: Output, kind: type[Provider] | Provider, strict: bool, structured: str) -> dict | None:
    """What of the output schema goes into the keys: its material, and whatever else changes the request."""
    schema_key = out.schema.key_material() if out.schema is not None else None
    if schema_key is not None and not strict and kind.strict_outputs:
        schema_key = {**schema_key, "strict": False}  # a different request; strict=True keys stay as they were
    if structured != constants.STRUCTURED_MODES[0]:  # another request: JSON mode, the schema in the prompt
        schema_key = {**schema_key, "structured": structured}
    return schema_key


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
