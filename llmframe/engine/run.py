"""The engine's way in: a plan plus the things that do I/O (provider, store, cost meter, progress) in,
an Outcome out. Nothing is written onto the plan; the collector turns plan and outcome into columns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..cost import estimate as estimate_
from ..cost.meter import CostMeter
from ..plan.build import Plan, Work
from ..providers import create
from ..providers.base import Provider
from ..stores.base import BaseStore as Store
from ..stores.manage import open_cache as open_store
from .answers import Answers
from .loop import Ready
from .callbacks import Dispatcher, with_callbacks
from .outcome import Counters, Live, Outcome
from .pool import answer_all
from .progress import Progress, for_run, should_show

if TYPE_CHECKING:
    from ..batch.runner import Batches


def open_provider(plan: Plan) -> Provider:
    """The plan's provider, made now: a missing key or SDK, or a bad provider option, raises here."""
    spec = plan.provider
    return create(spec.instance or f"{spec.name}:{spec.model}", api_key=spec.api_key, base_url=spec.base_url,
                  max_concurrency=spec.max_concurrency, timeout=spec.timeout, options=spec.options)


def open_cache(plan: Plan) -> Store | None:
    """The plan's answer store (None with cache=False); CacheError when it cannot be used (stores.manage)."""
    return open_store(plan.cache, plan.cache_dir, plan.cache_size_limit)


def prepare(plan: Plan, meter: CostMeter | None = None) -> tuple[Provider, Store | None, CostMeter]:
    """The provider, store and meter of the plan's execution, made now: whatever refuses the run (a missing
    key, the cache directory, a batch job over max_cost) raises here, before anything is sent."""
    provider = open_provider(plan)
    store = open_cache(plan)
    meter = meter if meter is not None else CostMeter.for_plan(plan)
    meter.check_batch(plan, store)
    return provider, store, meter


def estimate(plan: Plan, *, mode: str = "online") -> estimate_.Estimate:
    """A dry run: the provider is made (and checked) as for a run, the cache is read, nothing is sent."""
    open_provider(plan)
    return estimate_.estimate(plan, open_cache(plan), mode=mode)


def start(plan: Plan, *, meter: CostMeter | None = None, progress: Progress | None = None,
          live: Live | None = None) -> Callable[[], Awaitable[Outcome]]:
    """prepare() the plan, open the progress display, and return the run for the engine's loop.

    Called in the caller's thread, so bad input raises there. The display is made here too: Jupyter
    sends a widget to the cell of the thread that displays it, and the engine's thread belongs to whichever
    cell first started it. A sweep passes one display shared by all its runs, and meters over one budget.
    """
    memo_rows = plan.memo.answered if plan.memo is not None else 0  # rows the run memo answered: cached ones
    if plan.memo is not None and not len(plan.prompts):  # the run memo answered every row: nothing to open
        if progress is None and should_show(plan.progress):
            shown = for_run(memo_rows, show=True, description=plan.model)
            shown.advance(memo_rows, cached=True)
            shown.close("done")
        return Ready(Outcome(Answers(0, structured=plan.output.schema is not None), Counters()))
    provider, store, meter = prepare(plan, meter)
    if progress is None:
        progress = for_run(len(plan.prompts) + memo_rows, show=should_show(plan.progress), description=plan.model)
        progress.advance(memo_rows, cached=True)
    progress.advance(len(plan.prompts.skipped), skipped=True)
    return lambda: execute(plan, provider, store=store, meter=meter, progress=progress, live=live)


async def execute(plan: Plan, provider: Provider, *, store: Store | None, meter: CostMeter | None,
                  progress: Progress, live: Live | None = None) -> Outcome:
    """Answer every distinct request of the plan (online, or through the provider's batch API).

    live: an online run's answers so far, for a background job's status and partial result.
    """
    if plan.callbacks is not None:
        return await with_callbacks(plan, progress,
                                    lambda events: _execute(plan, provider, store, meter, progress, live, events))
    return await _execute(plan, provider, store, meter, progress, live, None)


async def _execute(plan: Plan, provider: Provider, store: Store | None, meter: CostMeter | None, progress: Progress,
                   live: Live | None, events: Dispatcher | None) -> Outcome:
    """execute(), its finished requests told to the run callbacks' dispatcher (events) where there is one."""
    if plan.batch is not None:
        outcome = await _execute_batch(plan, provider, store=store, meter=meter, progress=progress)
        if events is not None:
            events.all_rows(outcome.answers)
        return outcome
    started = time.perf_counter()
    answers, counters = await answer_all(plan.work(), provider, store=store, lookup=plan.lookup, policy=plan.policy,
                                         meter=meter, progress=progress, model=plan.model, live=live, events=events)
    return Outcome(answers, counters, time.perf_counter() - started, budget=_budget(meter))


async def _execute_batch(plan: Plan, provider: Provider, *, store: Store | None, meter: CostMeter | None,
                         progress: Progress) -> Outcome:
    """Submit the batch jobs (or re-attach to them), wait for them, collect their answers."""
    started = time.perf_counter()
    counters = Counters()
    state = "stopped"
    try:
        jobs = batch_jobs(plan, provider, store=store, meter=meter, progress=progress, counters=counters)
        await jobs.submit()
        answers = await jobs.wait()
        if meter is not None:
            meter.settle_batch(answers)
        state = "done"
        return Outcome(answers, counters, time.perf_counter() - started, jobs.job.id, _budget(meter))
    except asyncio.CancelledError:
        state = "interrupted"  # the jobs keep running at the provider: re-running re-attaches
        raise
    finally:
        progress.close(state)
        await provider.aclose()


def batch_jobs(plan: Plan, provider: Provider, *, store: Store | None, meter: CostMeter | None, progress: Progress,
            counters: Counters) -> Batches:
    """The batch jobs of a plan (llmframe.batch.runner.Batches), reporting to progress and counting in counters.

    With retry_online, requests whose batch line failed are sent again online; what those sends did is
    added to counters.
    """
    from ..batch.runner import Batches

    async def online(work: Work) -> Answers:
        answers, retried = await answer_all(work, provider, store=store, lookup=False, policy=plan.policy,
                                            meter=meter, progress=Progress(0, show=False), model=plan.model)
        counters.add(retried)
        return answers

    assert plan.batch is not None and store is not None
    return Batches(plan.work(), provider, store=store, model=plan.model, poll_interval=plan.batch.poll_interval,
                   progress=progress, online=online if plan.batch.retry_online else None, counters=counters,
                   alone=online if plan.packing is not None else None)


def _budget(meter: CostMeter | None):
    """The budget an outcome reports (None without max_cost)."""
    return meter.budget if meter is not None else None
