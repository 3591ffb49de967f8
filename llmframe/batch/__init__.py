"""Native batch jobs (OpenAI Batch API, Gemini batches, Anthropic Message Batches): durable, resumable.

    out = df.llm.generate("...{text}", model="openai:gpt-4o-mini", mode="batch")   # blocks, re-attaches
    job = df.llm.submit("...{text}", model="openai:gpt-4o-mini"); job.status(); out = job.result()
    llmframe.batches(); llmframe.cancel_batches("lf-...")                       # list, cancel
"""

from __future__ import annotations

import os
import warnings

from .. import constants
from ..errors import ConfigError, ProviderError
from .base import patiently
from .handle import BatchJob
from .state import COLLECTED, RUNNING, BatchStateWarning, DamagedState, Job, StateStore

__all__ = ["BatchJob", "batches", "cancel_batches"]


def _states(cache_dir: str | os.PathLike | None) -> StateStore:
    from ..stores.diskcache import resolve_directory

    return StateStore(resolve_directory(cache_dir))


def _scan(states: StateStore) -> tuple[list[Job], list[DamagedState]]:
    """The readable jobs, and a warning for each job file that is not (it is skipped, never fatal)."""
    jobs, damaged = states.scan()
    for problem in damaged:
        warnings.warn(str(problem), BatchStateWarning, stacklevel=3)
    return jobs, damaged


def _adapter(job: Job, api_key: str | None):
    from ..providers import create
    from .runner import adapter_for

    provider = create(job.model, api_key=api_key, base_url=job.base_url, max_concurrency=4,
                      timeout=constants.REQUEST_TIMEOUT_SECONDS)
    return adapter_for(provider)


def batches(cache_dir: str | os.PathLike | None = None, *, refresh: bool = False,
            api_key: str | None = None) -> list[dict]:
    """The batch jobs recorded in the cache directory, oldest first: id, model, status, and per batch its
    provider id, state and request counts. refresh=True asks the providers first (needs their API keys); a
    job its provider could not be asked about is listed as last seen, with the "refresh_error" (a warning
    says so), and the other jobs are still asked. A job file that cannot be read is listed with status
    "damaged", its "file" and the "error"."""
    states = _states(cache_dir)
    jobs, damaged = _scan(states)
    errors: dict[str, str] = {}
    if refresh:
        from ..engine.loop import run_sync

        for job in jobs:
            if any(c.status == RUNNING for c in job.chunks):
                try:
                    run_sync(lambda job=job: _refresh(job, states, api_key))
                except (ConfigError, ProviderError) as exc:  # one provider's trouble does not hide the others
                    errors[job.id] = str(exc)
        _warn_failed(errors, "could not be refreshed; they are listed as last seen")
    listed = [{**job.summary(), **({"refresh_error": errors[job.id]} if job.id in errors else {})} for job in jobs]
    listed += [problem.summary() for problem in damaged]
    return sorted(listed, key=lambda entry: entry["created"])


async def _refresh(job: Job, states: StateStore, api_key: str | None) -> None:
    adapter = _adapter(job, api_key)
    try:
        for chunk in job.chunks:
            if chunk.status == RUNNING and chunk.batch_id:
                status = await patiently(lambda chunk=chunk: adapter.poll(chunk.batch_id))
                chunk.state, chunk.done = status.state, max(chunk.done, status.done)
        states.save(job)
    finally:
        await adapter.aclose()


def _warn_failed(errors: dict[str, str], what: str) -> None:
    if errors:
        named = "; ".join(f"{job_id}: {why}" for job_id, why in errors.items())
        warnings.warn(f"{len(errors)} batch job(s) {what} ({named})", RuntimeWarning, stacklevel=3)


def _matches(job: Job, target: str | None, prefix: str | None) -> bool:
    ids = [job.id, *(c.batch_id for c in job.chunks if c.batch_id)]
    if target is not None:
        return target in ids
    return prefix is None or any(i.startswith(prefix) for i in ids)


def cancel_batches(target: str | None = None, *, all: bool = False, prefix: str | None = None,
                   cache_dir: str | os.PathLike | None = None, api_key: str | None = None) -> list[str]:
    """Cancel running batch jobs: one (a job id "lf-..." or a provider batch id), every one (all=True), or
    those whose id starts with prefix. Returns the provider batch ids asked to cancel. Answers that
    finished stay collectable: the next run of the same call collects them and resubmits only the rest. With
    all= or prefix=, a job whose provider fails is named in a warning and the others are still cancelled;
    if every one failed, the first error is raised."""
    if sum((target is not None, bool(all), prefix is not None)) != 1:
        raise ConfigError("cancel_batches needs exactly one of: a job or batch id, all=True, or prefix=...")
    states = _states(cache_dir)
    jobs, damaged = _scan(states)  # a damaged job is skipped: the others are still cancelled
    chosen = [job for job in jobs if any(c.status != COLLECTED for c in job.chunks) and _matches(job, target, prefix)]
    if target is not None and not chosen:
        for problem in damaged:
            if problem.path.stem == target:
                raise ConfigError(str(problem))
        raise ConfigError(f"no running batch job or batch {target!r} in {states.root}; "
                          "llmframe.batches() lists the known ones")
    from ..engine.loop import run_sync
    from .runner import cancel_job

    asked: list[str] = []
    errors: dict[str, str] = {}
    first: Exception | None = None
    for job in chosen:
        async def cancel(job: Job = job) -> list[str]:
            adapter = _adapter(job, api_key)
            try:
                return await cancel_job(adapter, job, states)
            finally:
                await adapter.aclose()

        try:
            asked += run_sync(cancel)
        except (ConfigError, ProviderError) as exc:
            if target is not None:
                raise
            errors[job.id], first = str(exc), first or exc
    if first is not None and len(errors) == len(chosen):
        raise first
    _warn_failed(errors, "could not be cancelled; the others were")
    return asked
