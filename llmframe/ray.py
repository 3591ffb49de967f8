"""The same generate on Ray Data: each actor of a pool runs batch.llm.generate on pandas batches.

    import ray, llmframe.ray as lray
    out = lray.generate(ray.data.read_parquet("in/"), "Sentiment of: {text}", model="openai:gpt-4o-mini",
                        output="sentiment", concurrency=8, rpm=5000)
    out.write_parquet("out/")
    lray.report(out)  # the run report, summed over every batch of every actor

One code path: an actor sets its provider up once and calls exactly `batch.llm.generate(...)` per
batch, so cache keys, outputs and per-row errors are those of a single process. rpm=/tpm= hold for
the whole cluster: a budget actor (a Limiter) hands each worker's limiter blocks of permits.
Ray is imported only when a function here is called: `import llmframe` never imports it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import weakref
from typing import TYPE_CHECKING, Any

import pandas as pd

from .collect import columns
from . import constants
from .engine import ratelimit
from .engine.run import open_provider
from .faces import frames, planning
from .options import check_names
from .config import settings
from .errors import ConfigError
from .providers import create
from .collect.report import one_warning_for_all_runs
from .plan.request import integer_at_least
from .plan.template import TemplateLike

if TYPE_CHECKING:
    import ray.data

# The report actor of each Dataset this module returned, for report(ds).
_TALLIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("llmframe.ray needs Ray Data: pip install 'llmframe[ray]'") from None
    return ray


class Budget:
    """The cluster's rate budget for one (provider, endpoint, model, key): a Limiter inside a Ray actor."""

    def __init__(self) -> None:
        self._limiter = ratelimit.Limiter()

    def configure(self, rpm: float | None, tpm: float | None) -> None:
        self._limiter.configure(rpm, tpm)

    def grant(self, requests: float, tokens: float) -> tuple[float, float, float]:
        return self._limiter.grant(requests, tokens)

    def pause(self, seconds: float) -> None:
        self._limiter.pause(seconds)

    def adopt(self, kind: str, per_minute: float) -> None:
        self._limiter.adopt(kind, per_minute)


class SharedBudget:
    """A worker's side of the Budget actor (ratelimit.Shared): spends blocks of permits, fetches the next when out."""

    def __init__(self, actor: Any):
        self._actor = actor
        self._requests = 0.0
        self._tokens = 0.0
        self._lock: asyncio.Lock | None = None
        self._paused_until = 0.0  # what was last forwarded, so a storm of 429s is one message, not hundreds
        self._adopted: dict[str, float] = {}

    async def take(self, tokens: float) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()  # made on the executor's loop, its only user
        async with self._lock:  # one fetch at a time; the other requests wait for its block
            while self._requests < 1 or self._tokens < tokens:
                need_requests = 0.0 if self._requests >= 1 else 1.0
                need_tokens = max(0.0, tokens - self._tokens)
                requests, more, wait = await self._actor.grant.remote(need_requests, need_tokens)
                if wait > 0:
                    await asyncio.sleep(wait)
                self._requests += requests
                self._tokens += more
            self._requests -= 1
            self._tokens -= tokens

    def settle(self, tokens: float) -> None:
        if not math.isinf(self._tokens):
            self._tokens += tokens

    def pause(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._actor.pause.remote(seconds)

    def adopt(self, kind: str, per_minute: float) -> None:
        if self._adopted.get(kind) != per_minute:
            self._adopted[kind] = per_minute
            self._actor.adopt.remote(kind, per_minute)


class Tally:
    """Collects the report of every batch of one job, for report(ds)."""

    def __init__(self) -> None:
        self._reports: list[dict] = []
        self._first = math.inf
        self._last = -math.inf

    def add(self, report: dict, started: float, ended: float) -> None:
        self._reports.append(report)
        self._first, self._last = min(self._first, started), max(self._last, ended)

    def report(self) -> dict:
        merged = columns.merge_reports(self._reports)
        merged["busy_seconds"] = merged["seconds"]  # time the actors spent in generate, summed
        merged["seconds"] = round(self._last - self._first, 3) if self._reports else 0.0
        return merged


class _Generate:
    """One actor of the pool: sets the provider and the shared budget up once, then one generate per batch."""

    def __init__(self, call: tuple, budget: Any, tally: Any, store: str | None = None):
        import os

        import llmframe  # noqa: F401  (registers df.llm in the actor's process)

        if store is not None:  # the driver's shared store, for cache=True and "refresh" alike (the process is ours)
            os.environ[constants.CACHE_URL_ENV_VAR] = store
        self._call = call
        self._tally = tally
        if budget is not None:
            _, model, _, _, options = call
            # The limiter this worker's runs will use: its identity is that of the worker's own provider.
            provider = create(model, api_key=options.get("api_key"), base_url=options.get("base_url"),
                              max_concurrency=1, timeout=constants.REQUEST_TIMEOUT_SECONDS,
                              options=options.get("provider_options"))
            limiter = ratelimit.limiter_for(provider.limiter_key, provider.ratelimit_headers)
            limiter.shared = SharedBudget(budget)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        template, model, output, errors, options = self._call
        started = time.time()
        with one_warning_for_all_runs():  # a warning per batch would flood the driver's log; report(ds) counts them
            out = batch.llm.generate(template, model=model, output=output, errors=errors, **options)
        report = dict(out.attrs[constants.REPORT_ATTR])
        report.pop("run_id", None)
        self._tally.add.remote(report, started, time.time())
        out.attrs = {}  # Arrow conversion must not carry a report per batch
        return out


def generate(
    ds: ray.data.Dataset,
    template: TemplateLike,
    *,
    model: str,
    output: Any = constants.DEFAULT_OUTPUT,
    errors: str = "column",
    concurrency: int | tuple[int, int] = constants.RAY_CONCURRENCY,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    batch_size: int = constants.RAY_BATCH_ROWS,
    budget: str = "shared",
    ray_remote_args: dict | None = None,
    **options: Any,
) -> ray.data.Dataset:
    """A Dataset with the answer (and error) columns added; lazy, as every Ray Data transform.

    concurrency: actors in the pool (or (min, max) to autoscale); num_cpus / num_gpus: per actor
    (num_gpus=1 for one local model per GPU; without either, an actor reserves half a CPU).
    budget: "shared" (one budget actor) or "split" (rpm/tpm divided evenly among the actors).
    options: those of df.llm.generate; cache_dir defaults to each node's own cache directory, unless a
    shared store is named (cache="postgresql://..." or the driver's LLMFRAME_CACHE_URL): every actor uses it.
    Bad arguments raise here, before anything runs.
    """
    ray = _ray()
    check_names(options)
    if budget not in constants.RAY_BUDGETS:
        raise ConfigError(f"budget must be one of {constants.RAY_BUDGETS}, got {budget!r}")
    if options.get("mode", "online") != "online":
        raise ConfigError(f"mode={options['mode']!r} is not supported on Ray (every batch would wait on a provider "
                          "batch job); send one batch job with df.llm.generate(..., mode='batch') instead")
    if options.get("output_mode") == "object":
        raise ConfigError("output_mode='object' cannot be stored in a Ray Dataset (Arrow holds no Python objects); "
                          "use the default output_mode='columns'")
    actors = _pool_size(concurrency)
    integer_at_least("batch_size", batch_size, 1)
    defaults = settings()
    # The driver's configure() defaults travel with the call: actors run in other processes.
    for name in ("rpm", "tpm", "max_concurrency", "cache_dir"):
        if options.get(name) is None and getattr(defaults, name) is not None:
            options[name] = getattr(defaults, name)
    options["progress"] = False  # Ray Data draws its own progress; a bar per actor would flood its logs
    # Everything is checked against the dataset's columns now, not in the first batch on a remote node.
    empty = pd.DataFrame(columns=list(ds.schema().names))
    probe = planning.plan(frames.rows_of(empty), template, model=model, output=output, errors=errors, **{**options, "cache": False})
    provider = open_provider(probe)  # a missing key or a bad provider option raises here too
    store = _shared_store(options)
    shared = None
    rpm, tpm = options.get("rpm"), options.get("tpm")
    if budget == "split":
        max_actors = actors[-1]
        options.update({k: v / max_actors for k, v in (("rpm", rpm), ("tpm", tpm)) if v is not None})
    elif rpm is not None or tpm is not None:
        shared = _budget_actor(ray, provider.limiter_key)
        ray.get(shared.configure.remote(rpm, tpm))
    tally = ray.remote(Tally).options(num_cpus=0).remote()
    compute = ray.data.ActorPoolStrategy(size=actors[0]) if len(actors) == 1 else ray.data.ActorPoolStrategy(
        min_size=actors[0], max_size=actors[1])
    remote_args = dict(ray_remote_args or {})
    if num_cpus is None and num_gpus is None:
        # An API client mostly waits on the network; a whole CPU per actor would starve the read tasks.
        num_cpus = constants.RAY_API_ACTOR_CPUS
    for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None:
            remote_args[name] = value
    out = ds.map_batches(
        _Generate,
        fn_constructor_kwargs={"call": (template, model, output, errors, options), "budget": shared, "tally": tally,
                               "store": store},
        batch_format="pandas",
        batch_size=batch_size,
        compute=compute,
        **remote_args,
    )
    _TALLIES[out] = tally
    return out


def report(ds: ray.data.Dataset) -> dict:
    """The run report of a Dataset generate() returned, summed over the batches run so far (after it executed)."""
    ray = _ray()
    tally = _TALLIES.get(ds)
    if tally is None:
        raise ConfigError("this Dataset was not returned by llmframe.ray.generate in this driver; pass that one")
    return ray.get(tally.report.remote())


def _shared_store(options: dict) -> str | None:
    """The driver's LLMFRAME_CACHE_URL where the call names no store of its own, for every actor; checked now.

    An actor on another node has neither the driver's environment nor its disk. The store is opened here
    (its server, tables, rights and format checked), so a bad one fails before any batch runs.
    """
    from .cacheurl import CacheURL
    from .options import checked
    from .stores.manage import locate, open_cache

    cache = checked({"cache": options.get("cache", True)})["cache"]
    if cache is False:
        return None
    if isinstance(cache, CacheURL):
        open_cache(cache, None, None)
        return None  # it travels in the options
    where = locate(options.get("cache_dir"))
    if not isinstance(where, CacheURL):
        return None
    open_cache(where, None, None)
    return where.url


def _pool_size(concurrency: Any) -> tuple[int, ...]:
    """(size,) or (min, max) of the actor pool, checked."""
    if isinstance(concurrency, tuple) and len(concurrency) == 2:
        low = integer_at_least("concurrency", concurrency[0], 1)
        high = integer_at_least("concurrency", concurrency[1], low)
        return (low, high)
    return (integer_at_least("concurrency", concurrency, 1),)


def _budget_actor(ray, identity: tuple):
    """The named budget actor of one identity, shared by every job of this driver that uses it."""
    *where, api_key = identity
    digest = hashlib.sha256(repr((*where, hashlib.sha256((api_key or "").encode()).hexdigest())).encode()).hexdigest()
    # Restarted if it dies (a fresh, full bucket), and its calls retried: a lost budget must not fail rows.
    actor = ray.remote(Budget).options(name=f"llmframe-budget-{digest[:16]}", get_if_exists=True, num_cpus=0,
                                      max_restarts=-1, max_task_retries=-1)
    return actor.remote()
