"""Embedding requests through the pool: many rows' inputs packed into one request, by count and estimated
tokens, sent with the same retries, limits and billing as any request; a refused pack is split in halves
until the row the server refuses is alone, so one bad input fails only its own row."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import constants
from ..errors import ProviderError
from ..plan.build import Policy, input_chars
from ..plan.request import Request, Response
from ..providers.base import Provider
from .attempts import billed_answer
from .outcome import Counters
from .ratelimit import Limiter, Patience

Pack = tuple[list[int], list[str]]  # (positions among the distinct requests, their input texts)
_NOT_SPLIT = frozenset({401, 403, 404})  # the key or the model is wrong: every half would fail the same way


class Packer:
    """The feeder's packs: rows' texts, chunk after chunk, in packs of up to max_inputs rows and about max_tokens
    tokens. A row that would take a pack past its token cap starts the next pack (never dropped); a pack not
    full yet waits for the next chunk's rows, and rest() gives it at the end."""

    def __init__(self, max_inputs: int, max_tokens: int):
        self.max_inputs, self.max_tokens = max_inputs, max_tokens
        self._positions: list[int] = []
        self._texts: list[str] = []
        self._tokens = 0

    def add(self, positions: list[int], texts: list[str]) -> list[Pack]:
        """Take rows; the packs they completed."""
        done: list[Pack] = []
        step = constants.CHARS_PER_TOKEN
        for j, text in zip(positions, texts):
            cost = -(-(len(text) if type(text) is str else input_chars(text)) // step)  # media rows: messages
            if self._positions and (self._tokens + cost > self.max_tokens or len(self._positions) >= self.max_inputs):
                done.append(self._take())
            self._positions.append(j)
            self._texts.append(text)
            self._tokens += cost
        if len(self._positions) >= self.max_inputs:
            done.append(self._take())
        return done

    def rest(self) -> Pack | None:
        """The last pack, not full (None when there is none)."""
        return self._take() if self._positions else None

    def _take(self) -> Pack:
        pack = (self._positions, self._texts)
        self._positions, self._texts, self._tokens = [], [], 0
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
        return Response(input_tokens=embedded.input_tokens, headers=embedded.headers, vector=vectors)


def _splittable(error: ProviderError | None) -> bool:
    """True when the server refused the request itself (a bad input, one too long), not the key or the pace."""
    return error is not None and not error.retryable and error.status not in _NOT_SPLIT


def shares(total: int, texts: list[str]) -> np.ndarray:
    """total tokens spread over the inputs by their length, summing to total exactly."""
    lengths = np.fromiter(map(input_chars, texts), dtype=np.float64, count=len(texts)) + 1.0
    share = np.floor(total * lengths / lengths.sum()).astype(np.int64)
    share[-1] += total - int(share.sum())
    return share


class _Estimate:
    """A pack as the attempts see a request: only its messages' lengths are read (the limiter's estimate)."""

    __slots__ = ("messages", "key", "params")

    def __init__(self, texts: list[str]):
        self.messages, self.key, self.params = [{"content": "x" * sum(map(input_chars, texts))}], "", {}


async def answer_pack(pack: Pack, provider: Provider, limiter: Limiter, policy: Policy, counters: Counters,
                      patience: Patience, settings: dict, finish: Callable[..., None],
                      finish_pack: Callable[..., None]) -> None:
    """Embed a pack and finish its rows together; a refused pack of many rows is split to find the bad one.

    finish_pack(positions, vectors, tokens, latency): the answered pack's rows at once.
    """
    positions, texts = pack
    embedder = _Embedder(provider, texts, settings)
    response = await billed_answer(_Estimate(texts), embedder, limiter, policy, counters, None,  # type: ignore[arg-type]
                                   provider.secrets, patience)
    if response.error is None:
        finish_pack(positions, response.vector, shares(response.input_tokens, texts), response.latency)
        return
    if len(positions) > 1 and _splittable(embedder.error):
        half = math.ceil(len(positions) / 2)
        counters.retries += 1
        for part in ((positions[:half], texts[:half]), (positions[half:], texts[half:])):
            await answer_pack(part, provider, limiter, policy, counters, patience, settings, finish, finish_pack)
        return
    for k, j in enumerate(positions):  # the breaker counts requests, not rows: one failed pack is one failure
        failed = Response(error=response.error, input_tokens=response.input_tokens if k == 0 else 0)
        finish(j, failed, counts_to_breaker=k == 0)

