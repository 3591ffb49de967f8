"""The worker pool: cache hits first, chunk by chunk, misses through a bounded pool of workers.

In-flight state is O(concurrency) however many rows the frame has: a feeder renders a chunk of
requests at a time into a bounded queue, and a fixed number of workers take from it.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from .. import constants
from ..cost.meter import CostMeter
from ..errors import RunAborted, StoreUnavailable
from ..plan.build import Policy, Work
from ..plan.request import Request, Response
from ..providers.base import Provider
from ..stores.base import BaseStore as Store
from .answers import Answers
from .attempts import billed_answer
from .callbacks import Dispatcher
from .groups import answer_group, take
from .outcome import Counters, Live
from .packed import RowPacks, answer_rows
from .packs import Pack, Packer, answer_pack
from .progress import Progress
from .ratelimit import Patience, limiter_for
from .writer import CacheWriter


async def answer_all(work: Work, provider: Provider, *, store: Store | None, lookup: bool, policy: Policy,
                     meter: CostMeter | None, progress: Progress, model: str,
                     live: Live | None = None, events: Dispatcher | None = None) -> tuple[Answers, Counters]:
    """Answer every request: cache hits first, chunk by chunk, misses through a bounded worker pool.

    live: filled with the answers and counters as they are made, for a caller that looks while it runs.
    events: the run callbacks' dispatcher, told of each finished request and of the progress.
    """
    pool = _Pool(work, provider, store, lookup, policy, meter, progress, model)
    pool.events = events
    if live is not None:
        live.answers, live.counters = pool.results, pool.counters
    return await pool.run()


class _Pool:
    """One run's pool: the feeder, the workers, and what they share (answers, counters, writer, limiter)."""

    def __init__(self, work: Work, provider: Provider, store: Store | None, lookup: bool, policy: Policy,
                 meter: CostMeter | None, progress: Progress, model: str):
        self.work, self.provider, self.store, self.lookup = work, provider, store, lookup
        self.policy, self.progress = policy, progress
        self.meter = meter
        self.capped = meter is not None and meter.capped  # max_cost: requests are reserved before they are sent
        self.results = Answers(len(work.keys), structured=work.check is not None, vectors=work.pack is not None)
        self.counters = Counters()
        self.writer = CacheWriter(store, model=model, overwrite=not lookup) if store is not None else None
        self.stale: set[int] = set()  # cached answers that no longer validate
        self.limiter = limiter_for(provider.limiter_key, provider.ratelimit_headers)
        self.limiter.configure(policy.rpm, policy.tpm)
        self.patience = Patience(policy.max_wait)
        progress.watch(self.limiter)  # the bar says when the server holds the pool back
        # Bounded: in-flight state is O(concurrency) however many rows the frame has.
        self.batched = provider.local_groups  # a local model: whole groups, in a worker thread
        slots = 2 * provider.group_size if self.batched else policy.concurrency
        self.pack = None if work.pack is None else _pack_size(work.pack, len(work.keys), policy.concurrency)
        if self.pack is not None:  # embeddings: the queue holds whole packs, a few per worker are plenty
            slots = max(1, policy.concurrency // (4 * constants.QUEUE_SLACK))
        self.queue: asyncio.Queue[tuple[int, Request] | None] = asyncio.Queue(maxsize=slots * constants.QUEUE_SLACK)
        self.workers: list[asyncio.Task] = []
        # A shared prefix worth a provider's prompt cache: the first request goes alone and writes it, so the
        # others read it instead of each paying a write (Anthropic bills writes a quarter above input).
        self.warming: tuple[int, asyncio.Event] | None = None
        # (not for packed rows: a pack waits for its rows, so the first row alone would never be answered)
        self.warm_first = work.warm_first and not self.batched and self.pack is None and work.packing is None
        self.events: Dispatcher | None = None

    def finish(self, j: int, response: Response, *, counts_to_breaker: bool = True) -> None:
        """Request j is answered (or failed for good): record it, price it, count it, hand it to the writer."""
        self.results[j] = response
        failed = response.error is not None
        if self.warming is not None and self.warming[0] == j:
            self.warming[1].set()
        cost = self.meter.settle(j, response) if self.meter is not None else None
        self.progress.advance(self.work.weights[j], failed=failed, error=response.error,
                              tokens=response.input_tokens + response.output_tokens, cost=cost,
                              prompt_cached=response.cached_input_tokens,
                              saved=self.meter.saved(response) if self.meter is not None else None)
        counters = self.counters
        if failed:
            if counts_to_breaker:
                counters.failed_in_a_row += 1
            if counters.failed_in_a_row >= self.policy.breaker:
                raise RunAborted(
                    f"the last {counters.failed_in_a_row} requests all failed (last error: {response.error}); "
                    "the run stopped early. Finished answers are cached: fix the cause and re-run"
                )
        else:
            counters.failed_in_a_row = 0
            if self.writer is not None:
                self.writer.add(self.work.keys[j], response, overwrite=j in self.stale)
        if self.events is not None:  # after the writer has it: a raising callback cannot lose the answer
            self.events.row(j, response, cost)

    def finish_pack(self, positions: list[int], vectors: np.ndarray, tokens: np.ndarray, latency: float | None
                    ) -> None:
        """finish() for a pack's answered rows at once: stored, priced, counted and handed to the writer together."""
        problem = self.results.put_vectors(positions, vectors, tokens, latency)
        if problem is not None:  # vectors of another length than the run's first: the pack's rows fail
            for k, j in enumerate(positions):
                self.finish(j, Response(error=problem, input_tokens=int(tokens[k])), counts_to_breaker=k == 0)
            return
        counts = tokens.tolist()
        cost = self.meter.settle_pack(positions, counts) if self.meter is not None else None
        self.progress.advance(int(np.asarray(self.work.weights)[positions].sum()), tokens=sum(counts), cost=cost)
        self.counters.failed_in_a_row = 0
        if self.writer is not None:
            stale = self.stale
            self.writer.add_vectors(self.work.keys.take(positions), vectors, counts, latency,
                                    [j in stale for j in positions] if stale else [False] * len(positions))

    async def worker(self) -> None:
        """Send requests from the queue one at a time, until the feeder's end marker."""
        queue, finish, writer, provider, limiter = self.queue, self.finish, self.writer, self.provider, self.limiter
        policy, counters, check, patience = self.policy, self.counters, self.work.check, self.patience
        secrets = provider.secrets
        while (item := await queue.get()) is not None:
            j, request = item
            finish(j, await billed_answer(request, provider, limiter, policy, counters, check, secrets, patience))
            if writer is not None:
                await writer.written()  # its next request waits: a crash re-asks only the requests in flight

    async def batch_worker(self) -> None:
        """A local model: whole groups to the provider, answered batch by batch in a worker thread."""
        stop = threading.Event()
        try:
            while group := await take(self.queue, self.provider.group_size):
                await answer_group(group, self.work, self.provider, stop, self.counters, self.finish)
        finally:
            stop.set()  # a cancelled run ends the batch still generating, instead of letting it finish unseen

    async def pack_worker(self) -> None:
        """Embeddings: packs of rows from the queue, one request each, until the feeder's end marker."""
        settings = self.work.settings
        while (pack := await self.queue.get()) is not None:
            await answer_pack(pack, self.provider, self.limiter, self.policy, self.counters, self.patience, settings,
                              self.finish, self.finish_pack)
            if self.writer is not None:
                await self.writer.written()

    async def rows_worker(self) -> None:
        """rows_per_request: packs of rows from the queue, one request each (engine/packed.py)."""
        packing = self.work.packing
        packer = RowPacks(self.queue, packing.size, wait=not self.capped)
        while pack := await packer.take():
            await answer_rows(pack, packing, self.provider, self.limiter, self.policy, self.counters, self.work.check,
                              self.patience, self.finish)
            if self.writer is not None:
                await self.writer.written()

    async def feed(self) -> None:
        """Look each chunk up in the cache, then queue its misses (within the budget, if there is one)."""
        work, results, store, progress, counters, meter = (self.work, self.results, self.store, self.progress,
                                                           self.counters, self.meter)
        writer, queue, capped = self.writer, self.queue, self.capped
        weights = np.asarray(work.weights, dtype=np.int64)
        packer = None if self.pack is None else Packer(*self.pack)
        for start in range(0, len(work.keys), constants.CHUNK_SIZE):
            chunk = work.keys[start : start + constants.CHUNK_SIZE]
            if self.lookup and store is not None:
                try:
                    found = store.get_many(chunk)
                except StoreUnavailable as exc:  # a shared store went away mid-run: ask, rather than fail the run
                    writer.unread(exc, len(chunk))
                    found = [None] * len(chunk)
                if None in found:  # some misses (a C scan: a cached re-run's chunks have none)
                    hits = [j for j, value in enumerate(found, start) if value is not None]
                    found = [found[j - start] for j in hits]
                else:
                    hits = np.arange(start, start + len(found))
                self.stale.update(results.fill_from_cache(hits, found, work.check))
                hit = results.cached[start : start + len(chunk)]
                progress.advance(int(weights[start : start + len(chunk)][hit].sum()), cached=True)
                if self.events is not None:
                    for j in (start + np.flatnonzero(hit)).tolist():
                        self.events.row(j, results[j])
            misses = (start + np.flatnonzero(~results.done[start : start + len(chunk)])).tolist()
            if capped and meter.stopped:
                counters.not_sent += len(misses)  # nothing more will be sent: no need to render them
                continue
            if packer is not None:  # embeddings: rows rendered as texts, a chunk at a time, queued a pack at a time
                for pack in packer.add(misses, work.texts(misses)) if misses else ():
                    await self.put_pack(pack)
                continue
            pending = zip(misses, work.build(misses))
            if work.group_prefixes:  # requests that share a prefix go one after another: the provider's cache reuses it
                pending = sorted(pending, key=_prompt_start)
            for j, request in pending:
                while writer is not None and writer.lagging():
                    await asyncio.sleep(constants.CACHE_BACKLOG_WAIT_SECONDS)
                if capped and not await meter.reserve(j, request):
                    counters.not_sent += 1  # later chunks are still looked up: cached answers cost nothing
                    continue
                await queue.put((j, request))
                if self.warm_first:
                    await self._warm(j)
        if packer is not None and (rest := packer.rest()) is not None:
            await self.put_pack(rest)
        for _ in self.workers:
            await queue.put(None)

    async def put_pack(self, pack: Pack) -> None:
        """Queue a pack; under max_cost each row is reserved first, and the rows reserved are queued before the
        feeder waits for room in the budget (the room comes from packs in flight, never from its own)."""
        while self.writer is not None and self.writer.lagging():
            await asyncio.sleep(constants.CACHE_BACKLOG_WAIT_SECONDS)
        if not self.capped:
            await self.queue.put(pack)
            return
        meter, kept = self.meter, ([], [])
        for j, text in zip(*pack):
            request = Request(self.work.keys[j], [{"role": "user", "content": text}], {})
            if kept[0] and not meter.fits(request):
                await self.queue.put(kept)
                kept = ([], [])
            if await meter.reserve(j, request):
                kept[0].append(j)
                kept[1].append(text)
            else:
                self.counters.not_sent += 1
        if kept[0]:
            await self.queue.put(kept)

    async def _warm(self, j: int) -> None:
        """Wait until request j, the run's first one sent, is answered: its reply has filled the prompt cache."""
        self.warm_first = False
        self.warming = (j, asyncio.Event())
        await self.warming[1].wait()
        self.warming = None

    async def tick(self) -> None:
        """Redraw the progress display now and then, however fast or slow rows finish."""
        while True:
            await asyncio.sleep(constants.PROGRESS_REFRESH_SECONDS)
            self.progress.refresh()
            if self.events is not None:
                self.events.progress(self.progress)

    async def run(self) -> tuple[Answers, Counters]:
        """Feed and work until every request is answered; whatever ends the run, the writer and provider close."""
        if self.pack is not None:
            packs = -(-len(self.work.keys) // self.pack[0])
            workers = 1 if self.batched else min(self.policy.concurrency, packs)  # a local model: one pack at a time
            self.workers = [asyncio.create_task(self.pack_worker()) for _ in range(workers)]
        elif self.work.packing is not None:
            packs = -(-len(self.work.keys) // self.work.packing.size)
            self.workers = [asyncio.create_task(self.rows_worker())
                            for _ in range(min(self.policy.concurrency, packs))]
        elif self.batched:
            self.workers = [asyncio.create_task(self.batch_worker())]  # one model, one generate call at a time
        else:
            self.workers = [asyncio.create_task(self.worker())
                            for _ in range(min(self.policy.concurrency, len(self.work.keys)))]
        tasks = [asyncio.create_task(self.feed()), *self.workers]
        ticker = asyncio.create_task(self.tick())
        state = "interrupted"
        self.limiter.enter()
        try:
            # Whichever task fails first (an abort, a bug) ends the run; the others are cancelled below.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    state = "stopped"
                    raise task.exception()
            state = "done"  # Progress tells complete from complete-with-failures by its own count
            if self.counters.not_sent:
                state = "max_cost reached"
                note = Response.failure(constants.BUDGET_NOT_SENT.format(max_cost=self.meter.max_cost))
                for j in np.flatnonzero(~self.results.done).tolist():
                    self.results[j] = note
        finally:
            for task in (ticker, *tasks):
                task.cancel()
            await asyncio.gather(ticker, *tasks, return_exceptions=True)
            # The last run on this budget lifts its pause: it must not outlive the runs that made it.
            self.limiter.leave()
            if self.meter is not None:
                self.meter.release()  # cut short (an abort, a cancel): a sweep's other runs go on
            if self.writer is not None:
                self.writer.close()
                self.counters.duplicates = self.writer.duplicates
                self.counters.not_cached = self.writer.lost
            await self.provider.aclose()
            self.progress.close(state)
        return self.results, self.counters


def _prompt_start(item: tuple[int, Request]) -> str:
    """The start of a request's prompt, which sorting by groups requests that share one."""
    text = "\0".join(str(m.get("content")) for m in item[1].messages)
    return text[: constants.PREFIX_GROUP_CHARS]


def _pack_size(limits: tuple[int, int], requests: int, concurrency: int) -> tuple[int, int]:
    """(inputs, tokens) per pack: the provider's most, or fewer so that every worker has a pack to send
    (but not below EMBEDDING_MIN_PACK: requests, not rows, are what a server's RPM limit counts)."""
    inputs, tokens = limits
    return max(1, min(inputs, max(constants.EMBEDDING_MIN_PACK, -(-requests // concurrency)))), tokens
