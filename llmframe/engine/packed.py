"""rows_per_request=k through the pool: k rows' items in one request, each answer mapped back to its row by id.

A row whose item is missing, repeated or invalid is asked again alone (its own request, with the usual
retries and re-asks), never given another row's answer. The packed request's billed tokens are split over
its rows (input by the length of their items, output by the length of their answers), summing exactly to
what the provider billed; a row asked again alone adds that request's tokens to its share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from ..plan.build import Check, Policy
from ..plan.packing import Packing
from ..plan.request import Request, Response
from ..providers.base import Provider
from .attempts import billed_answer
from .outcome import Counters
from .ratelimit import Limiter, Patience

Item = tuple[int, Request]


class RowPacks:
    """One worker's way of taking packs of up to `size` rows from the queue.

    wait=False takes only what is queued once a pack has a row: under max_cost the feeder waits for the
    reservations of rows already queued to settle, so a pack waiting to fill would never be sent.
    """

    def __init__(self, queue: asyncio.Queue, size: int, *, wait: bool = True):
        self.queue, self.size, self.wait = queue, size, wait
        self.ended = False

    async def take(self) -> list[Item]:
        """The next pack; empty once the feeder has finished."""
        pack: list[Item] = []
        while len(pack) < self.size and not self.ended:
            if pack and not self.wait and self.queue.empty():
                break
            item = await self.queue.get()
            if item is None:  # the feeder's end marker: one for each worker
                self.ended = True
                break
            pack.append(item)
        return pack


async def answer_rows(pack: list[Item], packing: Packing, provider: Provider, limiter: Limiter, policy: Policy,
                      counters: Counters, check: Check | None, patience: Patience,
                      finish: Callable[..., None]) -> None:
    """Answer a pack of rows in one request and finish each row; the rows it could not answer are asked alone."""
    secrets = provider.secrets
    if len(pack) == 1:
        j, request = pack[0]
        counters.single_requests += 1
        finish(j, await billed_answer(request, provider, limiter, policy, counters, check, secrets, patience))
        return
    requests = [request for _, request in pack]
    packed = packing.request(requests)
    response = await billed_answer(packed, provider, limiter, policy, counters, packing.check, secrets, patience)
    counters.packed_requests += 1
    answers, parsed = items_of(packing, check, response.parsed if response.error is None else None, len(pack))
    tokens = shares(packing, requests, response, answers)
    for n, (j, request) in enumerate(pack, 1):
        share = tokens[n - 1]
        if n in answers:
            finish(j, Response(answers[n], *share[:2], response.finish_reason, cached_input_tokens=share[2],
                               latency=response.latency, parsed=parsed.get(n), cache_write_tokens=share[3]))
            continue
        counters.asked_alone += 1
        counters.single_requests += 1
        alone = await billed_answer(request, provider, limiter, policy, counters, check, secrets, patience)
        alone.input_tokens += share[0]
        alone.output_tokens += share[1]
        alone.cached_input_tokens += share[2]
        alone.cache_write_tokens += share[3]
        finish(j, alone)


def items_of(packing: Packing, check: Check | None, value: dict | None, count: int
             ) -> tuple[dict[int, str], dict[int, object]]:
    """A packed answer's (already shape-checked) items: each valid answer text by id 1..count, and its parsed
    value where the output is structured; the ids left out are asked again alone."""
    answers = packing.split(value, count) if value is not None else {}
    parsed: dict[int, object] = {}
    if check is not None:
        for n, text in list(answers.items()):
            checked, problem = check(text)
            if problem is None:
                parsed[n] = checked
            else:
                del answers[n]
    return answers, parsed


def shares(packing: Packing, requests: list[Request], response: Response,
           answers: dict[int, str]) -> list[tuple[int, int, int, int]]:
    """Each row's share of a packed request's billed tokens: input by its item's length, output by its answer's."""
    items = [len(r.messages[-1]["content"]) - packing.chars + 1 for r in requests]
    return split_usage(response, items, [len(answers.get(n, "")) + 1 for n in range(1, len(requests) + 1)])


def split_usage(response: Response, inputs: list[int], outputs: list[int]) -> list[tuple[int, int, int, int]]:
    """A packed request's (input, output, cached input, cache-write) tokens over its rows: by these weights,
    summing exactly; a row's cached and cache-write tokens never exceed its input tokens."""
    inp = _spread(response.input_tokens, inputs)
    out = _spread(response.output_tokens, outputs)
    cached = _within(response.cached_input_tokens, inputs, inp)
    written = _within(response.cache_write_tokens, inputs, inp - cached)
    return list(zip(inp.tolist(), out.tolist(), cached.tolist(), written.tolist()))


def _within(total: int, weights: list[int], room: np.ndarray) -> np.ndarray:
    """total over the rows by the weights, none above its room; rounding's rest goes to the rows with room left."""
    part = np.minimum(_spread(total, weights), room)
    short = total - int(part.sum())
    for k in np.argsort(part - room):
        if short <= 0:
            break
        more = min(int(room[k] - part[k]), short)
        part[k] += more
        short -= more
    return part


def _spread(total: int, weights: list[int]) -> np.ndarray:
    """total over len(weights) parts in proportion to the weights, as whole numbers summing to total."""
    w = np.asarray(weights, dtype=np.float64)
    part = np.floor(total * w / w.sum()).astype(np.int64)
    part[-1] += int(total) - int(part.sum())
    return part
