"""The one module that owns asyncio: a cache-first, chunked worker pool on a background event loop.

Every run executes on one long-lived loop in a daemon thread. That is what lets the sync
`generate` work inside Jupyter (whose own loop is already running) without nest_asyncio,
and what lets Ctrl-C in the caller's thread cancel the run while finished answers are flushed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import random
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .. import constants
from ..cost.budget import Budget
from ..stores.diskcache import Store
from ..errors import ProviderError, RunAborted, redact
from .progress import Progress
from ..providers.base import Provider
from .ratelimit import Limiter, Patience, estimate_tokens, format_seconds, limiter_for, retry_after
from ..cost.usage import Meter
from .answers import EMPTY_ANSWER, Answers, is_empty
from ..plan.request import Request, Response

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """The process's executor loop, started on first use in a daemon thread."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=serve, name="llmframe-executor", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the executor loop and wait; Ctrl-C cancels it and lets it clean up."""
    loop = _background_loop()
    finished = threading.Event()

    async def guarded() -> T:
        try:
            return await make()
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(guarded(), loop)
    try:
        while True:
            try:
                # A timed wait keeps the caller's thread responsive to KeyboardInterrupt everywhere.
                return future.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        future.cancel()
        finished.wait(constants.CANCEL_GRACE_SECONDS)
        raise


async def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Await a coroutine that runs on the executor loop, from any other event loop."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return await make()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))


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

    def build(self, positions: Sequence[int]) -> list[Request]:
        """The requests at these positions."""
        if self.requests is not None:
            return self.requests(positions)
        return [self.request(j) for j in positions]


class _CacheWriter:
    """Writes answers to the cache on a thread of its own, off the loop.

    Each answer is handed over as it arrives, and whatever has piled up since the last write goes in
    one transaction, so the writer keeps pace however fast answers come. A worker sends its next
    request only once its answer is on disk (written()), so a crash re-asks at most the requests in
    flight; and the loop holds back new requests while more than CACHE_BACKLOG_ROWS answers wait for
    the disk (a local model's batches come many at once), so memory stays flat.
    """

    def __init__(self, store: Store, *, model: str, overwrite: bool):
        self._store = store
        self._model = model
        self._overwrite = overwrite
        self._loop = asyncio.get_running_loop()
        self._handed: list[tuple[str, str, bool]] = []  # handed over, waiting for the writer thread
        self._ready = threading.Condition()
        self._closing = False
        self.backlog = 0  # answers handed over and not written yet
        self._added = 0  # answers handed over so far
        self._written = 0  # of those, how many are written (or failed to be); set by the writer thread
        self._waiters: collections.deque[tuple[int, asyncio.Future]] = collections.deque()
        self._failures: list[BaseException] = []
        self.duplicates = 0  # answers another process had already stored: requests paid twice
        self._thread = threading.Thread(target=self._serve, name="llmframe-cache", daemon=True)
        self._thread.start()

    def add(self, key: str, response: Response, *, overwrite: bool = False) -> None:
        """Hand one answer to the writer thread now (writes stay in order: one thread)."""
        item = (key, response.to_cache(self._model, time.time()), overwrite or self._overwrite)
        with self._ready:
            self._handed.append(item)
            self.backlog += 1
            self._added += 1
            self._ready.notify()

    async def written(self) -> None:
        """Wait until every answer handed over so far is on disk (or its write has failed)."""
        if self._written >= self._added:
            return
        future = self._loop.create_future()
        self._waiters.append((self._added, future))
        await future

    def _wake(self, written: int) -> None:
        while self._waiters and self._waiters[0][0] <= written:
            future = self._waiters.popleft()[1]
            if not future.done():  # a cancelled worker's wait
                future.set_result(None)

    def lagging(self) -> bool:
        """True while the disk is behind: new requests wait, instead of answers piling up in memory."""
        return self.backlog >= constants.CACHE_BACKLOG_ROWS

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._handed and not self._closing:
                    self._ready.wait()
                if not self._handed:
                    return
                batch, self._handed = self._handed, []
            self._write(batch)
            with self._ready:
                self.backlog -= len(batch)
                self._written += len(batch)
                written = self._written
            with contextlib.suppress(RuntimeError):  # the loop has closed (interpreter exit): no one waits
                self._loop.call_soon_threadsafe(self._wake, written)

    def _write(self, batch: list[tuple[str, str, bool]]) -> None:
        try:
            for overwrite in (False, True):
                items = [(key, value) for key, value, replace in batch if replace is overwrite]
                self.duplicates += self._store.set_many(items, overwrite=overwrite)
        except Exception as exc:  # a full disk must not lose the run: the answers are still returned
            self._failures.append(exc)

    def close(self) -> None:
        """Write everything still handed over and wait for it: called on success, failure and cancel."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        try:
            self._store.trim()
        except Exception as exc:
            self._failures.append(exc)
        if self._failures:
            warnings.warn(
                f"{len(self._failures)} batch(es) of answers could not be written to the cache: {self._failures[0]}",
                RuntimeWarning,
                stacklevel=2,
            )


@dataclass(slots=True)
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
    price: Callable[[Response], float | None] | None = None  # USD of one answer, for progress and budget
    budget: Budget | None = None  # max_cost: no request is dispatched that could take spending past it
    estimate: Callable[[Request], float] | None = None  # USD a request may cost before it is sent, for budget


@dataclass(slots=True)
class Counters:
    """What the run did on the wire, for the report."""

    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 replies
    duplicates: int = 0  # answers another process stored first
    invalid: int = 0  # answers that did not validate against the output schema
    failed_in_a_row: int = 0
    not_sent: int = 0  # requests left unsent because the budget was reached
    failed_to_connect: int = 0  # failed requests none of whose attempts reached a server (refused, say)


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: spread retries out instead of synchronising them."""
    return random.uniform(0, min(constants.BACKOFF_CAP_SECONDS, constants.BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


def _correction(request: Request, answer: str | None, problem: str) -> Request:
    """The request as first asked, plus the latest invalid answer and what was wrong with it: models mostly fix it.

    A long answer is sent back cut to its head and tail, so re-asks stay within the model's context.
    """
    answer, cap = answer or "", constants.CORRECTION_ANSWER_CHARS
    if len(answer) > cap:
        answer = f"{answer[: cap // 2]}\n[... {len(answer) - cap} characters cut ...]\n{answer[-(cap // 2):]}"
    follow_up = [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": constants.CORRECTION_PROMPT.format(problem=problem)},
    ]
    return Request(request.key, [*request.messages, *follow_up], request.params)


async def _billed_answer(request: Request, provider: Provider, limiter: Limiter, policy: Policy, counters: Counters,
                         check: Check | None, secrets: tuple[str, ...], patience: Patience) -> Response:
    """_answer, carrying the tokens of every billed attempt; an empty text answer is asked again once.

    An empty answer that claims to be whole (finish reason stop) is the row's failure, never cached:
    a server or gateway hiccup more often than the model's answer, so one more try usually settles it.
    A structured run's empty answer is an invalid one instead, re-asked by _answer.
    """
    meter = Meter(provider)
    response = await _answer(request, meter, limiter, policy, counters, check, secrets, patience)  # type: ignore[arg-type]
    tries = 1
    while check is None and is_empty(response):
        if tries >= min(constants.EMPTY_ANSWER_RETRIES + 1, policy.max_attempts):
            response = response.rejected(EMPTY_ANSWER + (f" (after {tries} attempts)" if tries > 1 else ""))
            break
        tries += 1
        counters.retries += 1
        response = await _answer(request, meter, limiter, policy, counters, check, secrets, patience)  # type: ignore[arg-type]
    return meter.bill(response)


async def _answer(request: Request, provider: Provider, limiter: Limiter, policy: Policy, counters: Counters,
                  check: Check | None, secrets: tuple[str, ...], patience: Patience) -> Response:
    """One request with retries: every attempt paced by the limiter, every wait as long as the server asked.

    With check, an answer that does not validate is asked again (up to policy.invalid_retries times).
    """
    estimate = estimate_tokens(sum(len(m.get("content") or "") for m in request.messages), policy.max_tokens)
    attempt = invalid = unconnected = 0
    asked = request  # every re-ask is built on the request as first asked, not on the re-ask before it
    while True:
        attempt += 1
        await limiter.acquire(estimate, patience)
        counters.attempts += 1
        started = time.perf_counter()
        try:
            response = await provider.answer(request)
            response.latency = time.perf_counter() - started  # the answering attempt only: no queue or backoff
            patience.answered()
        except ProviderError as exc:
            limiter.learn(exc.headers)
            unconnected += not exc.connected
            if exc.status == 401:
                raise RunAborted(f"the provider refused the API key ({exc}); every row would fail, so the run "
                                 "stopped. Check the key (api_key= or the provider's environment variable)") from None
            if exc.quota:
                raise RunAborted(f"the provider says the account's quota or credit is spent ({exc}); every row "
                                 "would fail, so the run stopped. Check the plan and billing details; finished "
                                 "answers are cached") from None
            if exc.status in constants.POOL_PAUSE_STATUSES:
                patience.refused(str(exc))
            if not exc.retryable or attempt >= policy.max_attempts:
                counters.failed_to_connect += unconnected == attempt  # no attempt reached a server: never sent
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                return Response.failure(f"{exc}{suffix}")
            asked = retry_after(exc.headers)
            wait = asked if asked is not None else min(backoff(attempt), policy.max_wait)
            why = (f"the server asked to wait {format_seconds(wait)} s" if asked is not None
                   else f"backing off {format_seconds(wait)} s after HTTP {exc.status}")
            counters.retries += 1
            if exc.status == 429:
                counters.rate_limited += 1
            if exc.status in constants.POOL_PAUSE_STATUSES:
                patience.check(wait, f"{why} ({exc})")  # a wait too long stops the run: the pool itself would wait
                limiter.pause(wait, why)  # the limiter holds this worker, and all others, for the cool-down
            elif patience.beyond(wait):  # this row's own wait: only this row gives up
                return Response.failure(f"{exc} ({why}, beyond max_wait={format_seconds(policy.max_wait)} s)")
            else:
                await asyncio.sleep(wait)
            continue
        except Exception as exc:  # an unexpected failure is this row's, never the run's
            return Response.failure(redact(f"{type(exc).__name__}: {exc}", *secrets))
        if response.headers:
            limiter.learn(response.headers)
            response.headers = None  # about a kilobyte a reply: a million rows must not keep them
        limiter.settle(estimate, response.input_tokens + response.output_tokens)
        if check is None:
            return response
        value, problem = check(response.text)
        if problem is None:
            response.parsed = value
            return response
        counters.invalid += 1
        invalid += 1
        if invalid > policy.invalid_retries:
            return Response.failure(f"{problem} ({invalid} answers)" if invalid > 1 else problem)
        counters.retries += 1
        request = _correction(asked, response.text, problem)


async def _take(queue: asyncio.Queue[tuple[int, Request] | None], size: int) -> list[tuple[int, Request]]:
    """The next group for a local model: what is queued, up to size (empty once the feeder has finished)."""
    group: list[tuple[int, Request]] = []
    while len(group) < size and (group == [] or not queue.empty()):
        item = await queue.get()
        if item is None:
            queue.put_nowait(None)  # the end stays visible to the next call
            break
        group.append(item)
    return group


async def _answer_group(group: list[tuple[int, Request]], work: Work, provider: Provider, stop: threading.Event,
                        counters: Counters, finish: Callable[..., None]) -> None:
    """One group through a local model: each batch's answers are checked and finished as its batch ends.

    The worker thread runs the whole group and posts each batch to the loop without waiting for it:
    a round trip per batch would leave the model idle while the thread is scheduled again.
    """
    loop = asyncio.get_running_loop()
    answered: asyncio.Queue = asyncio.Queue()

    def produce() -> None:
        try:
            for batch in provider.run_batches([request for _, request in group], stop):
                loop.call_soon_threadsafe(answered.put_nowait, batch)
        except Exception as exc:  # the provider itself broke: the group's unanswered rows fail, the run goes on
            loop.call_soon_threadsafe(answered.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(answered.put_nowait, None)

    producing = asyncio.ensure_future(asyncio.to_thread(produce))
    unanswered = set(range(len(group)))
    while (answers := await answered.get()) is not None:
        if isinstance(answers, Exception):
            error = redact(f"{type(answers).__name__}: {answers}", *provider.secrets)
            answers = [(position, Response.failure(error)) for position in sorted(unanswered)]
        counters.attempts += len(answers)
        for position, response in answers:
            unanswered.discard(position)
            counts = True
            if work.check is not None and response.error is None:
                response.parsed, problem = work.check(response.text)
                if problem is not None:  # decoding was constrained: only a cut-off answer gets here
                    counters.invalid += 1
                    counts = False  # a weak model running out of tokens is the row's failure, not the run's
                    why = " (it reached max_tokens: raise max_tokens)" if response.finish_reason == "length" else ""
                    response = response.rejected(problem + why)
            elif is_empty(response):  # the model's own answer (no server between): asking again gives the same
                counts = False
                response = response.rejected(EMPTY_ANSWER)
            finish(group[position][0], response, counts_to_breaker=counts)
    await producing


async def execute(
    work: Work,
    provider: Provider,
    *,
    store: Store | None,
    lookup: bool,
    policy: Policy,
    progress: Progress,
    model: str,
) -> tuple[Answers, Counters]:
    """Answer every request: cache hits first, chunk by chunk, misses through a bounded worker pool."""
    results = Answers(len(work.keys), structured=work.check is not None)
    counters = Counters()
    writer = _CacheWriter(store, model=model, overwrite=not lookup) if store is not None else None
    stale: set[int] = set()  # cached answers that no longer validate
    limiter = limiter_for(provider.limiter_key, provider.ratelimit_headers)
    limiter.configure(policy.rpm, policy.tpm)
    patience = Patience(policy.max_wait)
    progress.watch(limiter)  # the bar says when the server holds the pool back
    # Bounded: in-flight state is O(concurrency) however many rows the frame has.
    batched = provider.local_groups  # a local model: whole groups, in a worker thread
    slots = 2 * provider.group_size if batched else policy.concurrency
    queue: asyncio.Queue[tuple[int, Request] | None] = asyncio.Queue(maxsize=slots * constants.QUEUE_SLACK)
    secrets = provider.secrets

    budget = policy.budget
    holding: dict[int, float] = {}  # request -> its budget reservation, released however the run ends

    def finish(j: int, response: Response, *, counts_to_breaker: bool = True) -> None:
        results[j] = response
        failed = response.error is not None
        billed = not failed or response.input_tokens or response.output_tokens  # a failure's rejected answers
        cost = policy.price(response) if policy.price is not None and billed else None
        if budget is not None and j in holding:
            budget.settle(holding.pop(j), 0.0 if failed and cost is None else cost)
        progress.advance(work.weights[j], failed=failed, tokens=response.input_tokens + response.output_tokens,
                         cost=cost)
        if failed:
            if counts_to_breaker:
                counters.failed_in_a_row += 1
            if counters.failed_in_a_row >= policy.breaker:
                raise RunAborted(
                    f"the last {counters.failed_in_a_row} requests all failed (last error: {response.error}); "
                    "the run stopped early. Finished answers are cached: fix the cause and re-run"
                )
        else:
            counters.failed_in_a_row = 0
            if writer is not None:
                writer.add(work.keys[j], response, overwrite=j in stale)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            j, request = item
            finish(j, await _billed_answer(request, provider, limiter, policy, counters, work.check, secrets,
                                           patience))
            if writer is not None:
                await writer.written()  # its next request waits: a crash re-asks only the requests in flight

    async def batch_worker() -> None:
        """A local model: whole groups to the provider, answered batch by batch in a worker thread."""
        stop = threading.Event()
        try:
            while group := await _take(queue, provider.group_size):
                await _answer_group(group, work, provider, stop, counters, finish)
        finally:
            stop.set()  # a cancelled run ends the batch still generating, instead of letting it finish unseen

    async def feed() -> None:
        weights = np.asarray(work.weights, dtype=np.int64)
        for start in range(0, len(work.keys), constants.CHUNK_SIZE):
            chunk = work.keys[start : start + constants.CHUNK_SIZE]
            if lookup and store is not None:
                found = store.get_many(chunk)
                hits = [j for j, value in enumerate(found, start) if value is not None]
                stale.update(results.fill_from_cache(hits, [found[j - start] for j in hits], work.check))
                hit = results.cached[start : start + len(chunk)]
                progress.advance(int(weights[start : start + len(chunk)][hit].sum()), cached=True)
            misses = (start + np.flatnonzero(~results.done[start : start + len(chunk)])).tolist()
            if budget is not None and budget.stopped:
                counters.not_sent += len(misses)  # nothing more will be sent: no need to render them
                continue
            for j, request in zip(misses, work.build(misses)):
                while writer is not None and writer.lagging():
                    await asyncio.sleep(constants.CACHE_BACKLOG_WAIT_SECONDS)
                if budget is not None:
                    estimate = policy.estimate(request)
                    if not await budget.acquire(estimate):
                        counters.not_sent += 1  # later chunks are still looked up: cached answers cost nothing
                        continue
                    holding[j] = estimate
                await queue.put((j, request))
        for _ in workers:
            await queue.put(None)

    async def tick() -> None:
        while True:
            await asyncio.sleep(constants.PROGRESS_REFRESH_SECONDS)
            progress.refresh()

    if batched:
        workers = [asyncio.create_task(batch_worker())]  # one model, one generate call at a time
    else:
        workers = [asyncio.create_task(worker()) for _ in range(min(policy.concurrency, len(work.keys)))]
    tasks = [asyncio.create_task(feed()), *workers]
    ticker = asyncio.create_task(tick())
    state = "interrupted"
    limiter.enter()
    try:
        # Whichever task fails first (an abort, a bug) ends the run; the others are cancelled below.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                state = "stopped"
                raise task.exception()
        state = "done"  # Progress tells complete from complete-with-failures by its own count
        if counters.not_sent:
            state = "max_cost reached"
            note = Response.failure(constants.BUDGET_NOT_SENT.format(max_cost=budget.max_cost))
            for j in np.flatnonzero(~results.done).tolist():
                results[j] = note
    finally:
        for task in (ticker, *tasks):
            task.cancel()
        await asyncio.gather(ticker, *tasks, return_exceptions=True)
        limiter.leave()  # the last run on this budget lifts its pause: it must not outlive the runs that made it
        for estimate in holding.values():  # cut short (an abort, a cancel): count the estimate, so a sweep's
            budget.settle(estimate, None)  # other runs go on
        if writer is not None:
            writer.close()
            counters.duplicates = writer.duplicates
        await provider.aclose()
        progress.close(state)
    return results, counters  # type: ignore[return-value]
