"""Embedding requests through the pool: many rows' inputs packed into one request, by count and estimated
tokens, sent with the same retries, limits and billing as any request; a refused pack is split in halves
until the row the server refuses is alone, so one bad input fails only its own row."""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Callable

import numpy as np

from .. import constants
from ..errors import ProviderError
from ..plan.build import Policy
from ..plan.request import Request, Response
from ..providers.base import Provider
from .attempts import billed_answer
from .outcome import Counters
from .ratelimit import Limiter, Patience

Item = tuple[int, Request]  # (position among the distinct requests, its request)
_NOT_SPLIT = frozenset({401, 403, 404})  # the key or the model is wrong: every half would fail the same way


def input_text(request: Request) -> str:
    """The text one row asks to embed: its message contents, joined."""
    messages = request.messages
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(m.get("content") or "" for m in messages)


def estimated_tokens(text: str) -> int:
    """An input's tokens before sending, as the rate limiter counts them (characters / 4)."""
    return -(-len(text) // constants.CHARS_PER_TOKEN)


class Packer:
    """One worker's way of taking packs from the queue: up to max_inputs rows and about max_tokens tokens.

    A row that would take a pack past its token cap waits for the next pack (carried, never dropped).
    wait=False takes only what is queued once a pack has a row: under max_cost the feeder waits for the
    reservations of rows already queued to settle, so a pack waiting to fill would never be sent.
    """

    def __init__(self, queue: asyncio.Queue, max_inputs: int, max_tokens: int, *, wait: bool = True):
        self.queue, self.max_inputs, self.max_tokens, self.wait = queue, max_inputs, max_tokens, wait
        self.carry: Item | None = None
        self.ended = False

    async def take(self) -> list[Item]:
        """The next pack; empty once the feeder has finished and nothing is carried."""
        pack: list[Item] = []
        tokens = 0
        while len(pack) < self.max_inputs:
            if self.carry is not None:
                item, self.carry = self.carry, None
            elif self.ended or (pack and not self.wait and self.queue.empty()):
                break
            else:
                item = await self.queue.get()
                if item is None:  # the feeder's end marker: one for each worker
                    self.ended = True
                    break
            cost = estimated_tokens(input_text(item[1]))
            if pack and tokens + cost > self.max_tokens:
                self.carry = item
                break
            pack.append(item)
            tokens += cost
        return pack


class _Embedder:
    """A pack's texts behind the one-request interface the attempts use: answer() embeds them all."""

    def __init__(self, provider: Provider, texts: list[str], settings: dict):
        self._provider, self._texts, self._settings = provider, texts, settings
        self.error: ProviderError | None = None  # the last refusal: whether a split can isolate a bad row

    def __getattr__(self, name: str):
        return getattr(self._provider, name)

    async def answer(self, request: Request) -> Response:
        try:
            embedded = await self._provider.embed_within(self._texts, self._settings)
        except ProviderError as exc:
            self.error = exc
            raise
        vectors = embedded.vectors
        if vectors.ndim != 2 or vectors.shape[0] != len(self._texts):
            raise ProviderError(f"malformed response: {vectors.shape[0] if vectors.ndim else 0} vectors for "
                                f"{len(self._texts)} inputs", retryable=True, headers=embedded.headers)
        encoded = embedded.encoded
        return Response(input_tokens=embedded.input_tokens, headers=embedded.headers, vector=vectors,
                        text=None if encoded is None else "\n".join(encoded))


def _splittable(error: ProviderError | None) -> bool:
    """True when the server refused the request itself (a bad input, one too long), not the key or the pace."""
    return error is not None and not error.retryable and error.status not in _NOT_SPLIT


def shares(total: int, texts: list[str]) -> np.ndarray:
    """total tokens spread over the inputs by their length, summing to total exactly."""
    lengths = np.fromiter(map(len, texts), dtype=np.float64, count=len(texts)) + 1.0
    share = np.floor(total * lengths / lengths.sum()).astype(np.int64)
    share[-1] += total - int(share.sum())
    return share


def encode(vector: np.ndarray) -> str:
    """A vector as the cache's text: its little-endian float32 bytes in base64 (exact, and a third of JSON's size)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


async def answer_pack(pack: list[Item], provider: Provider, limiter: Limiter, policy: Policy, counters: Counters,
                      patience: Patience, settings: dict, finish: Callable[..., None],
                      finish_pack: Callable[[list[int], list[Response]], None]) -> None:
    """Embed a pack and finish each of its rows; a refused pack of many rows is split to find the bad one."""
    texts = [input_text(request) for _, request in pack]
    embedder = _Embedder(provider, texts, settings)
    packed = Request("", [{"content": text} for text in texts], {})  # its length is the limiter's estimate
    response = await billed_answer(packed, embedder, limiter, policy, counters, None, provider.secrets,  # type: ignore[arg-type]
                                   patience)
    if response.error is None:
        tokens = shares(response.input_tokens, texts).tolist()
        latency, vectors = response.latency, response.vector
        # The reply's own base64 texts, where it sent them, are already the cache's spelling of the vectors.
        encoded = response.text.split("\n") if response.text else [encode(v) for v in vectors]
        finish_pack([j for j, _ in pack], [Response(encoded[k], tokens[k], 0, None, latency=latency,
                                                    vector=vectors[k]) for k in range(len(pack))])
        return
    if len(pack) > 1 and _splittable(embedder.error):
        half = math.ceil(len(pack) / 2)
        counters.retries += 1
        for part in (pack[:half], pack[half:]):
            await answer_pack(part, provider, limiter, policy, counters, patience, settings, finish, finish_pack)
        return
    for k, (j, _) in enumerate(pack):  # the breaker counts requests, not rows: one failed pack is one failure
        failed = Response(error=response.error, input_tokens=response.input_tokens if k == 0 else 0)
        finish(j, failed, counts_to_breaker=k == 0)
