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
from ..cacheurl import CacheURL
from ..config import Settings, settings
from ..cost.budget import check_max_cost
from ..cost.prices import Pricer
from ..errors import ConfigError
from .output import Output
from .packing import Packing, pack_schema, packing_for
from .prefix import StaticPrefix, static_prefix
from .request import KEYWORD_PARAMS, Keys, Request, content_digests, distinct, key_prefix, positive_number
from .media_template import media_settings
from .rows import Rows
from .structured import structured_mode, with_prompt
from .target import GivenProvider, ProviderKind, Target
from .tools import Tools, planned as planned_tools

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
    warm_first: bool = False  # a prompt-cacheable shared prefix: the first request is answered before the others go
    packing: Packing | None = None  # rows_per_request > 1: rows go several to a request (engine/packed.py)
    group_prefixes: bool = False  # a function template's prompts: each chunk's requests sent sorted by their text
    texts: Callable[[Sequence[int]], list[str]] | None = None  # embeddings: the inputs at positions, rendered

    def build(self, positions: Sequence[int]) -> list[Request]:
        """The requests at these positions."""
        if self.requests is not None:
            return self.requests(positions)
        return [self.request(j) for j in positions]

    def subset(self, positions: Sequence[int]) -> Work:
        """The work of the requests at these positions only (a batch's failed lines, sent again online)."""
        at = list(positions)
        keys = (Keys(self.keys.digests[np.asarray(at, dtype=np.int64)]) if isinstance(self.keys, Keys)
                else [self.keys[j] for j in at])
        texts = self.texts
        return Work(keys, lambda i: self.request(at[i]), [self.weights[j] for j in at], self.check,
                    lambda ps: self.build([at[i] for i in ps]), self.pack, self.settings,
                    texts=None if texts is None else (lambda ps: texts([at[i] for i in ps])))


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
    tools: Tools | None = None  # tools=: each row is a bounded loop of turns (engine.toolloop)


@dataclass(frozen=True)
class ProviderSpec:
    """The provider a plan's requests go to, and what the engine makes it with; the key is never shown."""

    target: Target  # model= resolved: the provider's prefix, the model's name, its class (or the instance given)
    endpoint: str | None  # as it is in the keys: None for the official one
    max_concurrency: int
    timeout: float
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    options: dict | None = None  # provider_options=

    @property
    def name(self) -> str:
        """The prefix of model=, e.g. "openai"."""
        return self.target.provider

    @property
    def model(self) -> str:
        """The model's own name."""
        return self.target.model

    @property
    def instance(self) -> GivenProvider | None:
        """A Provider passed as model=, used as it is; None: the engine makes one of the target's class."""
        return self.target.instance


@dataclass(frozen=True)
class BatchOptions:
    """How a batch run waits, and what it does with requests whose batch line failed."""

    poll_interval: float
    retry_online: bool = False


@dataclass(frozen=True)
class Callbacks:
    """on_row=, on_progress=, on_done= (engine/callbacks.py calls them), and how a row's index label is read."""

    on_row: Callable | None = None
    on_progress: Callable | None = None
    on_done: Callable | None = None
    label: Callable[[int], Any] | None = None  # row position -> its index label

    @classmethod
    def of(cls, checked: dict, rows: Rows) -> Callbacks | None:
        """The run's callbacks; None when it has none."""
        given = {name: checked[name] for name in ("on_row", "on_progress", "on_done")}
        return cls(**given, label=rows.label) if any(v is not None for v in given.values()) else None


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
    cache: bool | str | CacheURL  # True, False, "refresh", or the shared store's URL (stores.manage opens it)
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
    prefix: StaticPrefix | None = None  # the prompts' static prefix, for the providers' prompt caches
    packing: Packing | None = None  # rows_per_request > 1: how rows share a request
    prompt_cache: bool = True  # prompt_cache=: let the provider's prompt cache serve shared prefixes
    memo: Any = None  # what the run memo answered of the call (llmframe.memo.Part); its rows are not in this plan
    callbacks: Callbacks | None = None  # on_row=, on_progress=, on_done=: never part of a key

    @property
    def lookup(self) -> bool:
        """True when cached answers are read (cache=True or a URL); "refresh" only writes."""
        return _reads(self.cache)

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
            warm = self.prefix is not None and self.prefix.tokens >= constants.PROMPT_CACHE_WARM_TOKENS
            group = self.prompt_cache and self.prompts.roles is None  # a function's prompts: no known prefix
            return Work(self.keys, lambda j: requests([j])[0], self.weights, check, requests, warm_first=warm,
                        packing=self.packing, group_prefixes=group)

        def texts(positions) -> list[str]:
            rows = self.prompts.rows_at(self.first_row[np.asarray(positions, dtype=np.int64)])
            if rows and isinstance(rows[0], tuple) and len(rows[0]) == 1 and isinstance(rows[0][0], str):  # one message:
                # its text, no dict made (a media template's row is parts: its messages are made)
                return [row[0] for row in rows]
            return [input_text(self.prompts.messages_of(row)) for row in rows]

        return Work(self.keys, lambda j: requests([j])[0], self.weights, None, requests,
                    (embedding.max_inputs, embedding.max_tokens), embedding.settings, texts=texts)


def input_text(messages: list[dict]) -> str | list[dict]:
    """The text one embedding row asks to embed: its message contents, joined; a row with media parts: its
    messages, as they are (only a provider that embeds media gets them: plan.embed)."""
    if len(messages) == 1 and isinstance(messages[0]["content"], str):
        return messages[0]["content"]
    if any(isinstance(m.get("content"), list) for m in messages):
        return messages
    return "\n\n".join(m.get("content") or "" for m in messages)


def input_chars(item: str | list[dict]) -> int:
    """The characters an embedding input counts as in packs and estimates; a media part as much as a small image's
    tokens (constants.EMBEDDING_MEDIA_TOKENS)."""
    if isinstance(item, str):
        return len(item)
    media = constants.EMBEDDING_MEDIA_TOKENS * constants.CHARS_PER_TOKEN
    return sum(len(m.get("content") or "") if not isinstance(m.get("content"), list) else
               sum(len(p["text"]) if isinstance(p, dict) else media for p in m["content"]) for m in item)


@dataclass(frozen=True)
class Head:
    """What plan() settles before it renders a row: the checked options, the compiled template, the output, the
    generation parameters and the head of every key (the run memo fingerprints a call from this and the rows)."""

    checked: dict
    out: Output
    structured: str
    gen: dict
    compiled: Template
    target: Target
    endpoint: str | None
    head: bytes
    tools: Any
    provider_options: dict | None


def head(rows: Rows, template: TemplateLike, *, target: Target, positional_column: str | None = None,
         output_frame_columns: Sequence | None = None, **given: Any) -> Head:
    """plan()'s checks of every argument, and the keys' head, without rendering or keying a row."""
    checked = options.planned(given)  # every option through its check in the table, before anything else
    out = _output(checked, rows, output_frame_columns)
    structured = structured_mode(checked["structured"], out.schema)
    gen = _generation(checked)
    compiled = Template(template, list(rows.columns), system=checked["system"], positional_column=positional_column,
                        context=checked["context"])
    kind = target.kind  # the class alone (or the Provider passed as model=): the engine makes the provider
    provider_options = _with_api(checked, target, gen)
    endpoint = target.endpoint(checked["base_url"])
    if constants.EMBEDDING_KEY not in gen:  # plan.embed plans embedding runs through here too (no generation)
        kind.check_params(gen)
        kind.chat_model(target.model, endpoint=endpoint)
    if checked["cascade"] is not None:  # a face runs a cascade as several plans (ops/cascade.py), never one
        raise ConfigError("cascade= works with generate, agenerate and estimate on a frame or Series, the semantic "
                          "operators, and `llmframe run` without --max-cost; submit, sweeps and lazy queries cannot "
                          "run one (each stage waits on the answers of the one before): call generate instead "
                          '(mode="batch" sends each stage as a batch job)')
    size = checked["rows_per_request"]
    tools = planned_tools(checked, kind, f"{out.base}_{constants.TRANSCRIPT_SUFFIX}",
                          rows.columns if output_frame_columns is None else output_frame_columns)
    if size > 1 and tools is not None:
        raise ConfigError("rows_per_request cannot be used with tools=: each row's tool calls are its own "
                          "conversation; pass rows_per_request=1")
    keyed = gen if tools is None else {**gen, constants.TOOL_KEY: tools.key_material()}  # tomorrow's tools differ
    if size > 1:
        keyed = {**keyed, "rows_per_request": size}  # packed rows' answers are other answers
    key_head = key_prefix(target.provider, target.model, keyed, _schema_key(out, kind, checked["strict"], structured),
                          endpoint, api=checked["api"])
    return Head(checked, out, structured, gen, compiled, target, endpoint, key_head, tools, provider_options)


def plan(rows: Rows, template: TemplateLike, *, target: Target, positional_column: str | None = None,
         output_frame_columns: Sequence | None = None, **given: Any) -> Plan:
    """Validate every argument and render every row; raise before any request is sent.

    target: model= resolved by the face (llmframe.faces.planning.plan resolves and plans in one call).
    given: generate's options (llmframe.options.OPTIONS) but model=, each checked once, by its row of the
    table; those left out take the table's defaults. positional_column and output_frame_columns say how a
    face's rows are read: what "{}" refers to, and which columns the new ones sit beside (none for a Series).
    """
    return planned(rows, head(rows, template, target=target, positional_column=positional_column,
                              output_frame_columns=output_frame_columns, **given))


def planned(rows: Rows, h: Head, memo: Any = None) -> Plan:
    """plan() of a call whose head() is made: render and key these rows (the run memo passes the rows it could
    not answer, and what it answered of the call, which the plan carries to the collector)."""
    defaults = settings()
    checked, out, structured, gen, target, endpoint, tools = (h.checked, h.out, h.structured, h.gen, h.target,
                                                              h.endpoint, h.tools)
    provider_options = h.provider_options
    kind, size = target.kind, checked["rows_per_request"]
    prompts = h.compiled.render(rows, missing=checked["missing"], allow_no_placeholder=checked["allow_no_placeholder"],
                                media=media_settings(checked, kind, checked["cache_dir"] or defaults.cache_dir))
    keys, row_to_key, first_row = _keys(h.head, prompts, checked["max_prompt_tokens"])
    prompts.settled()  # media templates: raise if no row's media could be used
    batch = _batch_options(checked if tools is None else {**checked, "mode": "online"}, kind, len(first_row))
    pricer = _pricer(checked, target, batch=batch is not None)
    plain = gen
    if out.schema is not None:
        gen = {**gen, **kind.output_params(out.schema, strict=checked["strict"], structured=structured)}
    static = static_prefix(prompts, len(first_row), context=checked["context"] is not None)
    prefix = static if checked["prompt_cache"] else None
    cache_params = kind.prompt_cache_params(prefix, target.model) if prefix is not None else {}
    gen = {**gen, **cache_params}  # after the keys: they route or mark a request and change no answer
    packing = None
    if size > 1:
        chars = packing_for(size, static, len(prompts.roles or ()), structured=structured,
                            local=getattr(kind, "local_groups", False))
        schema = pack_schema(out.schema.json_schema if out.schema is not None else None)
        asked = kind.output_params(schema, strict=checked["strict"], structured=structured)
        params = {**plain, **asked, **cache_params}
        if "max_tokens" in plain:  # the limit is per answer: a pack carries size answers and their framing
            params["max_tokens"] = (plain["max_tokens"] + constants.PACK_ANSWER_TOKENS) * size
        packing = Packing(size, chars, params, out.schema is not None)
    if tools is not None:
        gen = {**gen, **kind.tool_params(tools.specs)}
    policy = _policy(checked, defaults, tools)
    return Plan(
        model=target.name,  # a Provider instance's too: the report's and the cache's name for it
        provider=ProviderSpec(target, endpoint, policy.concurrency, checked["timeout"], api_key=checked["api_key"],
                              base_url=checked["base_url"], options=provider_options),
        prompts=prompts,
        params=gen,
        keys=keys,
        row_to_key=row_to_key,
        first_row=first_row,
        weights=np.bincount(row_to_key[row_to_key >= 0], minlength=len(first_row)),
        cache=checked["cache"],
        cache_dir=checked["cache_dir"] or defaults.cache_dir,
        cache_size_limit=defaults.cache_size_limit,
        policy=policy,
        progress=defaults.progress if checked["progress"] is None else checked["progress"],
        output=out,
        pricer=pricer,
        max_cost=check_max_cost(checked["max_cost"], pricer),
        batch=batch,
        schema_prompt=out.schema.prompt() if structured == "json_object" else None,
        prefix=prefix,
        packing=packing,
        prompt_cache=checked["prompt_cache"],
        memo=memo,
        callbacks=Callbacks.of(checked, rows),
    )


def _output(checked: dict, rows: Rows, output_frame_columns: Sequence | None) -> Output:
    """Where the answers go; no new column may take the name of one it sits beside, or of an index level."""
    existing = rows.columns if output_frame_columns is None else output_frame_columns
    index_names = rows.index_names if output_frame_columns is None else ()
    return Output.resolve(checked["output"], prefix=checked["prefix"], mode=checked["output_mode"],
                          errors=checked["errors"], frame_columns=existing, usage=checked["usage"],
                          index_names=index_names)


def _generation(checked: dict) -> dict:
    """The generation parameters that were set, as the table checked them: the keyword ones, then params=."""
    gen = {name: checked[name] for name in KEYWORD_PARAMS if checked[name] is not None}
    return {**gen, **(checked["params"] or {})}


def _with_api(checked: dict, target: Target, gen: dict) -> dict | None:
    """provider_options=, with api= in them where it is not chat's (the provider reads it from there); api= and
    the generation parameters checked against the provider (a Responses-only parameter on chat, say)."""
    api, given = checked["api"], checked["provider_options"]
    target.kind.check_api(api, gen)
    if target.instance is not None and api not in (None, "chat"):
        raise ConfigError(f"api={api!r} with a Provider instance as model=: pass model='{target.name}' (a string) "
                          "with api=, so the choice of API is part of the cache key")
    if given and "api" in given:
        raise ConfigError("api is an option of its own (it is part of every cache key): pass api=, not "
                          "provider_options={'api': ...}")
    return {**(given or {}), "api": api} if api not in (None, "chat") else given


def _policy(checked: dict, defaults: Settings, tools: Tools | None = None) -> Policy:
    """How the run sends: the options given, else the process defaults of llmframe.configure()."""
    def either(name: str) -> Any:
        return getattr(defaults, name) if checked[name] is None else checked[name]

    return Policy(either("max_concurrency"), checked["max_attempts"], checked["max_wait"],
                  checked["max_failures_in_a_row"], either("rpm"), either("tpm"), checked["max_tokens"],
                  checked["invalid_retries"], tools)


def _reads(cache: bool | str | CacheURL) -> bool:
    """True for a cache= that reads answers: True or a shared store's URL."""
    return cache is True or isinstance(cache, CacheURL)


def _batch_options(checked: dict, kind: ProviderKind, requests: int) -> BatchOptions | None:
    """None for an online run; else how the batch run polls. ConfigError for a mode that cannot work.

    The table checked mode= and retry_online=: what is checked here needs the provider, cache= and the environment.
    """
    interval = _poll_interval(checked["poll_interval"])
    mode, cache = checked["mode"], checked["cache"]
    if mode == "online":
        return None
    supported = kind.batch_adapter is not None
    if mode == "auto":
        if not supported or not _reads(cache) or requests < constants.BATCH_AUTO_MIN_REQUESTS:
            return None
    elif not supported:
        raise ConfigError(f"the {kind.name} provider has no batch API: use mode='online'")
    if not _reads(cache):
        raise ConfigError(f"mode='batch' keeps its answers and job state in the cache, so it needs cache=True "
                          f"(got cache={cache!r}); to ask again, clear the model's answers with "
                          "llmframe.clear_cache(model=...) first")
    return BatchOptions(interval, checked["retry_online"])


def _poll_interval(given: float | None) -> float:
    """poll_interval= (the table checked it), else the environment's (checked here: the table cannot see it)."""
    if given is not None:
        return given
    raw = os.environ.get(constants.BATCH_POLL_ENV_VAR)
    if not raw:
        return constants.BATCH_POLL_SECONDS
    try:
        return positive_number(constants.BATCH_POLL_ENV_VAR, float(raw))
    except ValueError:  # ConfigError is one
        raise ConfigError(f"{constants.BATCH_POLL_ENV_VAR} must be a number of seconds > 0, got {raw!r}") from None


def _pricer(checked: dict, target: Target, *, batch: bool) -> Pricer | None:
    """The run's prices, where a cost is asked for (usage=, prices=, max_cost=): the price database costs ~17 MB."""
    if not (checked["usage"] or checked["prices"] is not None or checked["max_cost"] is not None):
        return None
    return Pricer.for_run(target.name, checked["prices"], warn=checked["usage"], batch=batch,
                          price_id=target.price_id)


def _keys(head: bytes, prompts: Prompts, max_prompt_tokens: int | None) -> tuple[Keys, np.ndarray, np.ndarray]:
    """The distinct content keys (first-seen order), each row's position among them (-1: skipped) and each
    key's first row."""
    digests, valid = _digests(head, prompts, max_prompt_tokens)
    row_to_key, first_row = distinct(digests, valid)
    keys = Keys(digests if len(first_row) == len(digests) else digests[first_row])  # all distinct: no copy
    return keys, row_to_key, first_row


def _schema_key(out: Output, kind: ProviderKind, strict: bool, structured: str) -> dict | None:
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
            if getattr(prompts, "media", False):  # images and documents count by the provider's rules
                over = {k: t for k, t in enumerate(map(prompts.tokens_of, rows)) if t > max_prompt_tokens}
            else:
                over = {k: prompts.chars_of(row) // constants.CHARS_PER_TOKEN for k, row in enumerate(rows)
                        if prompts.chars_of(row) > limit}
            for k, tokens in over.items():
                prompts.skip(int(positions[k]), f"prompt too long: about {tokens} tokens > max_prompt_tokens={max_prompt_tokens}")
            keep = [k for k in range(len(rows)) if k not in over]
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
