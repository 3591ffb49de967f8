"""One call's batch jobs: submit what the cache lacks, poll, collect answers into the cache, cancel.

The job is identified by the call's requests (their content keys) and endpoint, so re-running the
same call finds its state file and re-attaches instead of submitting again.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import operator
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence

import numpy as np

from .. import constants
from ..engine.answers import EMPTY_ANSWER, Answers, is_empty
from ..stores.base import BaseStore as Store
from ..errors import ConfigError, ProviderError
from ..engine.outcome import Counters
from ..engine.progress import Progress
from ..providers.base import Provider
from ..plan.build import Check, Work
from ..plan import vector_value
from ..plan.request import Response
from .base import Adapter, Status, patiently
from . import packed
from .split import split
from .state import COLLECTED, ENDED, NEW, RUNNING, BatchStateWarning, Chunk, DamagedState, Job, StateStore

# Why a request has no answer when its batch ended without one, by the provider's final state.
_UNANSWERED = {
    "expired": "the batch expired before this request ran",
    "JOB_STATE_EXPIRED": "the batch expired before this request ran",
    "cancelled": "the batch was cancelled before this request ran",
    "JOB_STATE_CANCELLED": "the batch was cancelled before this request ran",
    "TIMEOUT_EXCEEDED": "the batch expired before this request ran",  # Mistral's
    "CANCELLED": "the batch was cancelled before this request ran",
}


def adapter_for(provider: Provider) -> Adapter:
    """The batch adapter the provider declares (Provider.batch_adapter); ConfigError for one without a batch API."""
    target = provider.batch_adapter
    if target is None:
        raise ConfigError(f"the {provider.name} provider has no batch API; use mode='online'")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(provider)


def job_id(model: str, base_url: str | None, keys: Sequence[str]) -> str:
    """The id of the job for these requests at this endpoint: the same call always gets the same id."""
    digest = hashlib.blake2b(f"{model}\n{base_url or ''}\n".encode(), digest_size=8)
    digest.update("\n".join(keys).encode())
    return "lf-" + digest.hexdigest()


def first_polls(interval: float) -> list[float]:
    """The waits before each poll: short at first (small jobs end fast), then the interval."""
    waits, wait = [], min(constants.BATCH_FIRST_POLL_SECONDS, interval)
    while wait < interval:
        waits.append(wait)
        wait *= 2
    return waits


_text = operator.attrgetter("text")


def settle(keys: Sequence[str], found: dict[str, Response], why: str, check: Check | None,
           model: str, counters: Counters | None = None) -> tuple[list[Response], list[tuple[str, str]]]:
    """Each key's response (its answer, or an error: why when nothing came back) and the cache items of the
    answers. With check, an answer that does not validate is an error (a batch cannot ask again), counted
    in counters.invalid."""
    missing = Response.failure(why)
    if check is None:  # the common case, as comprehensions: collecting a million answers is CPU-bound
        responses = [found.get(key, missing) for key in keys]
        if "" in map(_text, responses):  # an empty answer is a failure, never cached (looked for in C: rare)
            responses = [r.rejected(EMPTY_ANSWER) if is_empty(r) else r for r in responses]
    else:
        responses = []
        for key in keys:
            response = found.get(key, missing)
            if response.error is None:
                response.parsed, problem = check(response.text)
                if problem is not None:
                    response = response.rejected(problem)  # its tokens were billed all the same
                    if counters is not None:
                        counters.invalid += 1
            responses.append(response)
    answered = [(key, r) for key, r in zip(keys, responses) if r.error is None]
    if answered and answered[0][1].vector is not None:  # an embedding job's vectors: binary values, one pass
        values = vector_value.encode(np.stack([r.vector for _k, r in answered]).astype(np.float32, copy=False),
                                     [r.input_tokens for _k, r in answered], None, model, time.time(), batch=True)
    else:
        values = Response.many_to_cache([r for _k, r in answered], model, time.time())
    return responses, [(key, value) for (key, _r), value in zip(answered, values)]


def _note(chunks: list[Chunk]) -> str:
    """Requests done per batch for the progress bar: each batch while there are few, else a summary."""
    if len(chunks) <= 4:
        return " ".join(f"{c.done:,}/{c.requests:,}" for c in chunks)
    ended = sum(c.status == COLLECTED for c in chunks)
    return f"{ended}/{len(chunks)} ended, {sum(c.done for c in chunks):,}/{sum(c.requests for c in chunks):,} requests"


class Batches:
    """The batch jobs of one call: submit(), then wait() (or status() now and then)."""

    def __init__(self, work: Work, provider: Provider, *, store: Store, model: str, poll_interval: float,
                 progress: Progress, online: Callable[[Work], Awaitable[Sequence[Response | None]]] | None = None,
                 counters: Counters | None = None,
                 alone: Callable[[Work], Awaitable[Sequence[Response | None]]] | None = None):
        self.work = work
        self.adapter = adapter_for(provider)
        self.store = store
        self.model = model
        self.poll_interval = poll_interval
        self.progress = progress
        self.online = online  # retries rows whose batch request failed, when the caller asked for it
        self.counters = counters if counters is not None else Counters()  # the run's: invalid answers
        self.states = StateStore(store.state_dir)  # local even where the answers are shared
        keys = work.keys[:]  # hex strings, once: the custom ids
        self.job = Job(job_id(model, provider.base_url, keys), model, provider.base_url, len(keys))
        self.results = Answers(len(keys), structured=work.check is not None, vectors=work.pack is not None)
        self._index = {key: j for j, key in enumerate(keys)}
        self._counted: dict[str, int] = {}  # rows already shown as done, per chunk
        self._stale: set[str] = set()  # cached answers the output schema now rejects: overwritten when collected
        self.alone = alone  # rows_per_request: asks the rows a pack's answer left out, online (batch/packed.py)
        self._alone: dict[int, tuple] = {}  # those rows' positions, and their share of their pack's tokens

    # --- submit -----------------------------------------------------------------------------

    async def submit(self) -> Job:
        """Re-attach to this call's running jobs, collect ended ones, and create jobs for what is still missing."""
        try:
            self.job = self.states.load(self.job.id) or self.job
        except DamagedState as damaged:
            self._rebuild(damaged)
        await self._create([c for c in self.job.chunks if c.status == NEW])  # recorded, then the kernel died
        await self.refresh()
        covered, lost = set(), False
        for chunk in self.job.active():
            keys = self.states.keys(self.job, chunk)
            covered.update(keys or ())
            lost = lost or keys is None
        missing = self._lookup(covered)
        if lost:  # any row may be in the batch whose keys are lost: sending it again could pay twice
            missing = []  # what that batch does not answer fails this call, and the next run asks it again
        limit_requests, limit_bytes = self.adapter.provider.batch_limits
        gate = asyncio.Semaphore(constants.BATCH_SUBMIT_CONCURRENCY)
        creating = []
        # Each chunk is recorded (keys, then the job file) before it is created, and created while the next
        # one is built: a crash at any point re-attaches, and only a few chunks' lines are in memory at once.
        for group, lines in split(self._lines(missing), limit_requests, limit_bytes):
            if any(f.done() and not f.cancelled() and f.exception() is not None for f in creating):
                break  # the provider refused a batch: the gather below raises why, nothing more is sent
            chunk = Chunk(self._next_uid(), len(group))
            if self.work.packing is not None:  # a packed line's id is its rows' keys: the key file lists the rows
                group = [key for keys in group for key in keys]
            self.states.save_keys(self.job, chunk, group)
            self.job.chunks.append(chunk)
            self.states.save(self.job)
            await gate.acquire()
            creating.append(asyncio.ensure_future(self._create_one(chunk, lines, gate)))
        # Every creation settles before an error is raised, so the state on disk is final when the caller sees it.
        for outcome in await asyncio.gather(*creating, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        return self.job

    def _rebuild(self, damaged: DamagedState) -> None:
        """Rebuild a job whose file cannot be read from its chunks' key files: each chunk is then found at the
        provider by its tag (OpenAI, Gemini), served from the cache, or created again."""
        self.job.chunks = self.states.recorded(self.job)
        warnings.warn(f"{damaged.path} is damaged ({damaged.why}): rebuilt from the key files of its "
                      f"{len(self.job.chunks)} batches", BatchStateWarning, stacklevel=2)
        if self.job.chunks:
            self.states.save(self.job)
        else:
            self.states.delete(self.job)

    def _next_uid(self) -> str:
        """A chunk uid this job has never used (a refused chunk leaves a gap, so the count of chunks is not one)."""
        used = [int(c.uid.rsplit("-", 1)[1]) for c in self.job.chunks]
        return f"{self.job.id}-{max(used, default=-1) + 1}"

    def _lookup(self, covered: set[str]) -> list[int]:
        """Serve cached answers; return the requests that need a batch (not cached, not in a running job)."""
        keys, results = self.work.keys, self.results
        weights = np.asarray(self.work.weights, dtype=np.int64)
        missing: list[int] = []
        for start in range(0, len(keys), constants.CHUNK_SIZE):
            block = keys[start:start + constants.CHUNK_SIZE]
            found = self.store.get_many(block)
            hits = [j for j, value in enumerate(found, start) if value is not None and not results.done[j]]
            stale = results.fill_from_cache(hits, [found[j - start] for j in hits], self.work.check)
            self._stale.update(block[j - start] for j in stale)  # answers that no longer validate: replace them
            served = np.asarray([j for j in hits if results.done[j]], dtype=np.int64)
            self.progress.advance(int(weights[served].sum()), cached=True)
            missing += [j for j, key in enumerate(block, start) if not results.done[j] and key not in covered]
        return missing

    def _packed_lines(self, positions: list[int]) -> Iterator[tuple[tuple[str, ...], str]]:
        """(the rows' keys, JSON line) of each pack of rows_per_request rows at these positions."""
        line = None
        for rows, request in packed.packed_requests(self.work, positions):
            line = line or self.adapter.line_builder(request.params)
            keys = tuple(r.key for r in rows)
            try:
                yield keys, line(packed.pack_id(keys), request.messages)
            except ProviderError as exc:  # its media could not be read: its rows fail
                for key in keys:
                    self.results[self._index[key]] = Response.failure(str(exc))
                self.progress.advance(sum(int(self.work.weights[self._index[k]]) for k in keys), failed=True,
                                      error=str(exc))

    def _lines(self, positions: list[int]) -> Iterator[tuple[str, str]]:
        """(custom id, JSON line) of the requests at these positions, rendered a chunk at a time."""
        if self.work.packing is not None:
            yield from self._packed_lines(positions)
            return
        line = None
        for start in range(0, len(positions), constants.CHUNK_SIZE):
            requests = self.work.build(positions[start:start + constants.CHUNK_SIZE])
            if line is None:
                line = self.adapter.line_builder(requests[0].params)
            for request in requests:
                try:
                    text = line(request.key, request.messages)
                except ProviderError as exc:  # its media could not be read (a file gone since planning): its row's
                    j = self._index[request.key]
                    self.results[j] = Response.failure(str(exc))
                    self.progress.advance(int(self.work.weights[j]), failed=True, error=str(exc))
                    continue
                yield request.key, text

    async def _create(self, chunks: list[Chunk]) -> None:
        """Create chunks recorded by a run that died before creating them (or before saving their ids)."""
        gate = asyncio.Semaphore(constants.BATCH_SUBMIT_CONCURRENCY)
        for chunk in chunks:
            await gate.acquire()
            keys = self.states.keys(self.job, chunk)
            if keys is not None and all(value is not None for value in self.store.get_many(keys)):
                chunk.status, chunk.done, chunk.succeeded = COLLECTED, len(keys), len(keys)  # no batch needed
                self.states.save(self.job)
                gate.release()
                continue
            chunk.batch_id = await patiently(lambda chunk=chunk: self.adapter.find(chunk.uid, chunk.created))
            if chunk.batch_id is not None or keys is None:
                if chunk.batch_id is not None:  # the provider got it before the id was saved
                    chunk.status = RUNNING
                    self.states.save(self.job)
                else:  # never created, and what it held is unknown: its rows are looked up and sent anew
                    self._forget(chunk)
                gate.release()
                continue
            group = [self._index[k] for k in keys]
            await self._create_one(chunk, [text for _key, text in self._lines(group)], gate)

    async def _create_one(self, chunk: Chunk, lines: list[str], gate: asyncio.Semaphore) -> None:
        """Create one batch and record its id; releases gate when done. A chunk the provider refused is forgotten:
        nothing was created, so nothing is left to re-attach to or list."""
        since = time.time()
        try:
            chunk.batch_id = await patiently(lambda: self.adapter.create(chunk.uid, lines),
                                             took_effect=lambda: self.adapter.find(chunk.uid, since))
        except (ConfigError, ProviderError) as exc:
            if isinstance(exc, ConfigError) or (exc.status is not None and 400 <= exc.status < 500):
                self._forget(chunk)
            raise
        finally:
            gate.release()
        chunk.status, chunk.created = RUNNING, time.time()
        self.states.save(self.job)  # the id is on disk the moment the provider has the batch

    def _forget(self, chunk: Chunk) -> None:
        self.job.chunks.remove(chunk)
        self.states.drop_keys(self.job, chunk)
        if self.job.chunks:
            self.states.save(self.job)
        else:
            self.states.delete(self.job)

    # --- poll and collect -------------------------------------------------------------------

    async def refresh(self) -> Job:
        """Poll every running chunk once; collect the ones that ended."""
        running = [c for c in self.job.chunks if c.status in (RUNNING, ENDED)]
        seen = await asyncio.gather(*(self._poll(c) for c in running))
        for chunk, status in zip(running, seen):
            if status is None:
                continue
            chunk.state = status.state
            if chunk.status == RUNNING:
                chunk.done = status.done
                self._show(chunk, chunk.done)
            if status.ended:
                chunk.status = ENDED
                self.states.save(self.job)
                await self._collect(chunk, status)
        if running:
            self.states.save(self.job)
        self.progress.note = _note(self.job.chunks)
        return self.job

    async def _poll(self, chunk: Chunk) -> Status | None:
        try:
            return await self.adapter.poll(chunk.batch_id)
        except ProviderError as exc:
            if exc.retryable:
                return None  # a hiccup: the next poll asks again
            raise

    def _show(self, chunk: Chunk, requests: int) -> None:
        """Advance the bar to `requests` of this chunk's requests (rows estimated until collection)."""
        before = self._counted.get(chunk.uid, 0)
        if requests > before:
            self.progress.advance(requests - before)
            self._counted[chunk.uid] = requests

    async def _collect(self, chunk: Chunk, status: Status) -> None:
        """Write the chunk's answers to the cache, keep its errors for this call, mark it collected."""
        found = await patiently(lambda: self.adapter.results(chunk.batch_id)) if status.error is None else {}
        why = status.error or _UNANSWERED.get(status.state, "the batch ended without an answer to this request")
        keys = self.states.keys(self.job, chunk)
        if keys is None:  # the key file is gone: the answers still name their rows (custom id = key)
            keys = list(found)
        elif self.work.packing is not None:  # each pack's answer as its rows' own
            found, alone = packed.unpack(self.work, keys, found, self._index)
            self._alone.update(alone)
            self.counters.packed_requests += -(-len(keys) // self.work.packing.size)
        responses, items = settle(keys, found, why, self.work.check, self.model, self.counters)
        rows = 0
        for key, response in zip(keys, responses):
            j = self._index.get(key)
            if j is not None:
                self.results[j] = response
                rows += int(self.work.weights[j])
        self.store.set_many([item for item in items if item[0] not in self._stale])
        self.store.set_many([item for item in items if item[0] in self._stale], overwrite=True)
        chunk.succeeded, chunk.failed = len(items), len(keys) - len(items)
        chunk.done, chunk.status = chunk.requests if self.work.packing is not None else len(keys), COLLECTED
        self.states.save(self.job)
        self.progress.advance(rows - self._counted.get(chunk.uid, 0))
        self._counted[chunk.uid] = rows

    async def wait(self) -> Answers:
        """Poll until every job ended and is collected; the answers (and per-request errors) of the call."""
        waits = iter(first_polls(self.poll_interval))
        while any(c.status != COLLECTED for c in self.job.chunks):
            await asyncio.sleep(next(waits, self.poll_interval))
            await self.refresh()
            self.progress.refresh()
        results = self.results
        if self._alone and self.alone is not None:  # rows a pack's answer left out: asked alone, online
            positions = sorted(self._alone)
            self.counters.asked_alone += len(positions)
            for j, response in zip(positions, await self.alone(self.work.subset(positions))):
                if response is not None:
                    results[j] = packed.with_share(response, self._alone[j])
            self._alone.clear()
        failed = np.flatnonzero(results.failed()).tolist()
        if failed and self.online is not None:
            retry = self.work.subset(failed)
            for j, response in zip(failed, await self.online(retry)):
                if response is not None:
                    results[j] = response
        for j in np.flatnonzero(~results.done).tolist():  # cannot happen with a consistent state file
            results[j] = Response.failure("no batch answer came back for this request")
        weights = np.asarray(self.work.weights, dtype=np.int64)
        self.progress.failed = int(weights[results.failed()].sum())
        return results

    async def cancel(self) -> list[str]:
        """Cancel this call's running jobs; their finished answers are still collected."""
        return await cancel_job(self.adapter, self.job, self.states)

    async def aclose(self) -> None:
        await self.adapter.aclose()


async def cancel_job(adapter: Adapter, job: Job, states: StateStore) -> list[str]:
    """Ask the provider to cancel every running chunk of a job; the ids asked."""
    asked = []
    try:
        for chunk in job.chunks:
            if chunk.status == NEW:  # never created: nothing to stop, nothing to collect
                chunk.status = COLLECTED
            elif chunk.status == RUNNING and chunk.batch_id:
                await patiently(lambda chunk=chunk: adapter.cancel(chunk.batch_id))
                chunk.cancel_requested = True
                asked.append(chunk.batch_id)
    finally:  # what was asked before a failure stays recorded
        states.save(job)
    return asked
