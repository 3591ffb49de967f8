"""A local model's way through the pool: whole groups to the provider, answered batch by batch in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from ..errors import redact
from ..plan.build import Work
from ..plan.request import Request, Response
from ..providers.base import Provider
from .answers import EMPTY_ANSWER, is_empty
from .outcome import Counters


async def take(queue: asyncio.Queue[tuple[int, Request] | None], size: int) -> list[tuple[int, Request]]:
    """The next group for a local model: what is queued, up to size (empty once the feeder has finished)."""
    group: list[tuple[int, Request]] = []
    while len(group) < size and (group == [] or not queue.empty()):
        item = await queue.get()
        if item is None:
            queue.put_nowait(None)  # the end stays visible to the next call
            break
        group.append(item)
    return group


async def answer_group(group: list[tuple[int, Request]], work: Work, provider: Provider, stop: threading.Event,
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
