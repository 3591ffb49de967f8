"""What the cost levers change in an estimate: rows_per_request (fewer requests, the fixed text once per
request) and the provider's prompt cache (the shared prefix read at the cached rate after the first request)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import constants
from .money import dollars
from .prices import Pricer

if TYPE_CHECKING:
    from ..plan.build import Plan


def packed_tokens(run: Plan, tokens: np.ndarray) -> tuple[int, np.ndarray]:
    """(requests, input tokens of each) when rows go rows_per_request to a request: the fixed text once a request."""
    packing, n = run.packing, len(tokens)
    if packing is None or not n:
        return n, tokens
    requests = -(-n // packing.size)
    static = run.prefix.tokens if run.prefix is not None else packing.chars // constants.CHARS_PER_TOKEN
    overhead = len(constants.PACK_PROMPT) // constants.CHARS_PER_TOKEN
    own = np.maximum(tokens - static, 0) + constants.PACK_ITEM_TOKENS  # each row's item, with its framing
    sizes = np.full(requests, packing.size)
    sizes[-1] = n - packing.size * (requests - 1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return requests, np.add.reduceat(own, starts) + static + overhead


def prompt_cache_note(run: Plan, pricer: Pricer, tokens: np.ndarray) -> tuple[str | None, float | None]:
    """A note on what the provider's prompt cache would take off the input cost, and that saving in USD."""
    prefix = run.prefix
    if prefix is None or len(tokens) < 2 or prefix.tokens < constants.PROMPT_CACHE_WARM_TOKENS or not pricer.known:
        return None, None
    cached = np.minimum(np.full(len(tokens), prefix.tokens), tokens)
    cached[0] = 0  # the first request writes the cache
    zeros = np.zeros(len(tokens))
    full = float(pricer.costs(tokens, zeros).sum())
    saved = full - float(pricer.costs(tokens, zeros, cached).sum())
    if saved <= 0:
        return None, None
    return (f"prompt cache: {prefix.tokens:,} tokens every request shares; read from the provider's cache after "
            f"the first request, the input costs about {dollars(full - saved)} instead of {dollars(full)} "
            "(where the provider caches it: see 'Paying less')"), saved


def cache_write_premium(run: Plan, pricer: Pricer, tokens: np.ndarray, mode: str) -> tuple[str | None, float, float]:
    """A note on the prompt cache's write premium (Anthropic bills the prefix a cache_control breakpoint writes at
    1.25x the input rate), and that premium in USD at the low and the high end of the estimate.

    Online the first request goes alone and writes the prefix once (the low and the high end); a batch job's
    requests run in no order, so at the high end every one may write it.
    """
    prefix = run.prefix
    if prefix is None or not len(tokens) or constants.ANTHROPIC_CACHE_PARAM not in run.params or not pricer.known:
        return None, 0.0, 0.0
    written = min(prefix.tokens, int(tokens[0]))
    one = (pricer.cost(written, 0, 0, written) or 0.0) - (pricer.cost(written, 0) or 0.0)
    if one <= 0:
        return None, 0.0, 0.0
    high = one * (len(tokens) if mode == "batch" else 1)
    where = ("the first request writes it once (it goes alone)" if mode != "batch" else
             "at least one request writes it, at most every request of the batch (the high end)")
    return (f"prompt cache writes: the {written:,}-token prefix is written at the cache-write rate, "
            f"{dollars(one)} above plain input per write; {where}"), one, high
