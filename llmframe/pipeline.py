"""One run, front to back: validate and render (before anything is sent), execute, collect columns."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import constants
from .cache import Store, open_store
from .config import settings
from .columns import Output
from .errors import ConfigError
from .executor import Counters, Policy, Work, execute
from .progress import Progress, should_show
from .providers import parse_model, provider_class
from .providers.base import Provider
from .answers import Answers
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
from .template import Prompts, Template, TemplateLike

@dataclass
class Run:
    """Everything a run needs, checked and rendered; building one sends nothing."""

    model: str
    frame_index: pd.Index
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
    seconds: float = 0.0  # wall time of the execution, for the report
    counters: Counters = field(default_factory=Counters)

    def work(self) -> Work:
        def requests(positions) -> list[Request]:
            rows = self.prompts.rows_at(self.first_row[np.asarray(positions, dtype=np.int64)])
            keys = self.keys.take(positions)
            return [Request(key, self.prompts.messages_of(row), self.params) for key, row in zip(keys, rows)]

        check = self.output.schema.parse if self.output.schema is not None else None
        return Work(self.keys, lambda j: requests([j])[0], self.weights, check, requests)

    def start(self) -> Callable[[], Awaitable[Answers]]:
        """Open the progress display in the caller's thread and return the run, for the executor's loop.

        The display must be created here: Jupyter sends a widget to the cell of the thread that
        displays it, and the executor's thread belongs to whichever cell first started it.
        """
        progress = Progress(len(self.frame_index), show=self.show_progress, description=self.model)
        progress.advance(len(self.prompts.skipped))
        return lambda: self._execute(progress)

    async def _execute(self, progress: Progress) -> Answers:
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
    output: Any = constants.DEFAULT_OUTPUT,
    prefix: str = "",
    output_mode: str = "columns",
    strict: bool = True,
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
    progress: bool | None = None,
    errors: str = "column",
    api_key: str | None = None,
    base_url: str | None = None,
    positional_column: str | None = None,
    output_frame_columns: Sequence | None = None,
    provider_options: dict | None = None,
) -> Run:
    """Validate every argument and render every row; raise before any request is sent."""
    defaults = settings()
    provider_name, model_name = parse_model(model)
    if not (cache is True or cache is False or cache == "refresh"):
        raise ConfigError(f"cache must be True, False or 'refresh', got {cache!r}")
    existing = frame.columns if output_frame_columns is None else output_frame_columns
    out = Output.resolve(output, prefix=prefix, mode=output_mode, errors=errors, frame_columns=existing)
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
        invalid_retries=integer_at_least("invalid_retries", invalid_retries, 0),
    )
    positive_number("timeout", timeout)
    gen = generation_params(
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, stop=stop, params=params
    )
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
    head = key_prefix(provider_name, model_name, gen, schema_key)
    digests, valid = _digests(head, prompts, max_prompt_tokens)
    codes, first_row = distinct(digests, valid)
    weights = np.bincount(codes[codes >= 0], minlength=len(first_row))
    store = open_store(cache_dir or defaults.cache_dir, size_limit=defaults.cache_size_limit) if cache is not False else None
    return Run(
        model=model,
        frame_index=frame.index,
        prompts=prompts,
        params={**gen, **provider.output_params(out.schema, strict=strict)} if out.schema is not None else gen,
        keys=Keys(digests[first_row]),
        row_to_key=codes,
        first_row=first_row,
        weights=weights,
        provider=provider,
        store=store,
        lookup=cache is True,
        policy=policy,
        show_progress=should_show(defaults.progress if progress is None else progress),
        output=out,
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
