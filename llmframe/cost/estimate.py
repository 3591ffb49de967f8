"""Dry runs: what a run would send and cost, computed from the plan alone; nothing is sent.

Input tokens are counted by the provider's token_counter where it has one (OpenAI's: tiktoken,
when it is installed and its encoding loads); otherwise they are approximated as characters / 4,
the figure the rate limiter also uses. A request's most output tokens are max_tokens, else the
provider's default_max_tokens, else a documented guess: no provider is named here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import media
from .. import constants
from . import levers
from .money import dollars
from .prices import Pricer
from ..plan.request import Request

if TYPE_CHECKING:
    from ..plan.build import Plan, ProviderSpec
    from ..plan.tools import Tools
    from ..providers.base import Provider
    from ..stores.base import BaseStore as Store

MODES = ("online", "batch")
APPROXIMATION = f"approximate: characters / {constants.CHARS_PER_TOKEN}"


@dataclass
class Estimate:
    """What a run would send and cost; estimate() returns one, and sends nothing."""

    model: str
    mode: str
    rows: int
    skipped: int  # rows that would not be sent (missing values, too long)
    requests: int  # distinct requests (identical rows share one)
    uncached_rows: int
    uncached_requests: int  # what would actually be sent
    input_tokens: int  # of the uncached requests
    tokenizer: str  # "tiktoken:<encoding>" or the approximation used
    output_tokens: tuple[int, int]  # low and high over the uncached requests
    cost: tuple[float, float] | None  # USD low and high; None when the model's price is unknown
    price: dict | None  # the rates used, USD per million tokens
    samples: list = field(default_factory=list)  # the rendered messages of the first few rows to be sent
    notes: list = field(default_factory=list)
    not_cached_because: list | None = None  # what differs from the last run of this call (the run memo's record)
    rows_per_request: int = 1  # rows_per_request=k: uncached_requests carry several distinct rows each
    distinct_rows: int = 0  # distinct rows to send (uncached_requests, unless rows_per_request > 1)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable values."""
        return asdict(self)

    def __repr__(self) -> str:
        cost = "unknown (no price: pass prices=)" if self.cost is None else f"{dollars(self.cost[0])} to {dollars(self.cost[1])}"
        lines = [
            f"Estimate for {self.model} ({self.mode}): nothing was sent",
            f"  rows {self.rows:,}, skipped {self.skipped:,}, distinct requests {self.requests:,}",
            f"  to send: {self.uncached_requests:,} requests for {self.uncached_rows:,} rows{self._not_sent()}",
            f"  input tokens {self.input_tokens:,} ({self.tokenizer})",
            f"  output tokens {self.output_tokens[0]:,} to {self.output_tokens[1]:,}",
            f"  cost {cost}",
            *(f"  note: {n}" for n in self.notes),
            *([f"  not cached: {'; '.join(self.not_cached_because)}"] if self.not_cached_because else []),
        ]
        for i, messages in enumerate(self.samples):
            lines.append(f"  sample {i + 1}:")
            lines += [f"    [{m.get('role')}] {m.get('content')}" for m in messages]
        return "\n".join(lines)


    def _not_sent(self) -> str:
        """Why the other rows need no request of their own: cached, or sharing an identical row's request."""
        cached = self.rows - self.skipped - self.uncached_rows
        distinct = self.uncached_requests if self.rows_per_request == 1 else self.distinct_rows
        shared = self.uncached_rows - distinct
        why = [f"{n:,} {'row' if n == 1 else 'rows'} {words}" for n, words in
               ((cached, "cached"), (shared, "sharing an identical row's request")) if n]
        if self.rows_per_request > 1:
            why.append(f"up to {self.rows_per_request} rows a request")
        return f" ({'; '.join(why)})" if why else ""


def _rendered(run: Plan, rows: np.ndarray):
    """The rendered rows at these positions, a chunk at a time (prompts are rendered on demand)."""
    for start in range(0, len(rows), constants.RENDER_CHUNK_ROWS):
        yield from run.prompts.rows_at(rows[start : start + constants.RENDER_CHUNK_ROWS])


def _chars(run: Plan, rows: np.ndarray) -> np.ndarray:
    """Characters of the messages of the rows at these positions."""
    return np.fromiter(map(run.prompts.chars_of, _rendered(run, rows)), dtype=np.int64, count=len(rows))


def _approximate(chars: np.ndarray) -> np.ndarray:
    return -(-chars // constants.CHARS_PER_TOKEN)  # ceil, as ratelimit.estimate_tokens


def provider_kind(spec: ProviderSpec) -> type[Provider]:
    """The plan's provider class (or the instance given as model=), whose capabilities the estimates read: a
    plugin's as a built-in's."""
    return spec.target.kind  # type: ignore[return-value]  (a Provider: the Target's Protocol lists planning's needs)


def output_limit(kind: type[Provider], max_tokens: int | None, effort: str | None = None) -> int:
    """The most output tokens one request can take: max_tokens, what the provider sends without one, or a guess
    (plus, for a reasoning model without max_tokens, the thinking REASONING_TOKENS_ESTIMATE guesses for effort)."""
    thinking = constants.REASONING_TOKENS_ESTIMATE.get(effort, 0) if effort and not max_tokens else 0
    return int(max_tokens or kind.default_max_tokens or constants.OUTPUT_TOKENS_GUESS) + thinking


def request_cost(pricer: Pricer, limit: int, tools: Tools | None = None, *,
                 writes: bool = False) -> Callable[[Request], float]:
    """An upper-leaning USD estimate of one request before it is sent (input chars / 4, output at its limit);
    with tools, of all max_turns turns of its row (Tools.turn_tokens). writes: the prompt may be written to the
    provider's prompt cache, so its input is priced at the cache-write rate where that is the dearer one."""

    provider = pricer.model.partition(":")[0]

    def cost(request: Request) -> float:
        if media.has_media(request.messages):  # images and documents: by the provider's rules
            return pricer.cost(media.prompt_tokens(provider, request.messages), limit) or 0.0
        chars = sum(len(m.get("content") or "") for m in request.messages)
        prompt = -(-chars // constants.CHARS_PER_TOKEN)
        inp, out = (prompt, limit) if tools is None else tools.turn_tokens(prompt, limit)
        return max(pricer.cost(inp, out) or 0.0, (pricer.cost(inp, out, 0, inp) or 0.0) if writes else 0.0)

    return cost


def input_tokens(run: Plan, first_row: np.ndarray) -> tuple[np.ndarray, str]:
    """Input tokens of each distinct request, and how they were counted."""
    counter = provider_kind(run.provider).token_counter(run.provider.model)
    if counter is None:
        tokens, name = _approximate(_chars(run, first_row)), APPROXIMATION
    else:
        count, name = counter
        messages = (run.prompts.messages_of(row) for row in _rendered(run, first_row))
        tokens = np.fromiter(map(count, messages), dtype=np.int64, count=len(first_row))
    if getattr(run.prompts, "media", False):  # images and documents, by the provider's documented rules
        provider = run.provider.name
        tokens = tokens + np.fromiter((media.message_tokens(provider, run.prompts.messages_of(row))
                                       for row in _rendered(run, first_row)), dtype=np.int64, count=len(first_row))
    return tokens, name


def _uncached(run: Plan, store: Store | None) -> np.ndarray:
    """A mask over distinct requests: True where no answer is cached (or the cache is not read)."""
    missing = np.ones(len(run.keys), dtype=bool)
    if store is None or not run.lookup:
        return missing
    for start in range(0, len(run.keys), constants.CHUNK_SIZE):
        found = store.get_many(run.keys[start : start + constants.CHUNK_SIZE])
        missing[start : start + len(found)] = [value is None for value in found]
    return missing


def estimate(run: Plan, store: Store | None, *, mode: str = "online") -> Estimate:
    """What `run` would send and cost, its cached answers read from store; sends nothing."""
    pricer = Pricer(run.model, prices=run.pricer.overrides if run.pricer else None, batch=mode == "batch",
                    price_id=run.provider.target.price_id)
    pricer.warn_unknown()
    missing = _uncached(run, store)
    send_rows = run.first_row[missing]
    tokens, tokenizer = input_tokens(run, send_rows)
    kind = provider_kind(run.provider)
    embedding = run.embedding is not None  # vectors: no output tokens at all
    effort = run.params.get("reasoning_effort")
    limit = 0 if embedding else output_limit(kind, run.params.get("max_tokens"), effort)
    low = 0 if embedding else constants.MIN_OUTPUT_TOKENS
    rows_to_send = len(send_rows)
    n, tokens = levers.packed_tokens(run, tokens)
    if run.packing is not None:
        limit = int(run.packing.params.get("max_tokens") or limit)
    low_costs = pricer.costs(tokens, np.full(n, low))
    tools, high_tokens, high_output = run.policy.tools, tokens, np.full(n, limit)
    if tools is not None:  # the high end: every row takes every turn (the low end: one turn, no tool called)
        high_tokens, high_output = tools.turn_tokens(tokens, limit)
        high_output = np.full(n, high_output)
    high_costs = pricer.costs(high_tokens, high_output)
    notes = []
    if tools is not None:
        notes.append(f"tools: the low end assumes 1 turn per row (no tool called), the high end max_turns="
                     f"{tools.max_turns} turns per row, each re-sending the tool declarations and the conversation "
                     f"so far (earlier answers at their output limit, tool results at their {constants.TOOL_OUTPUT_CHARS:,}"
                     f"-character cap); a typical row takes {constants.TOOL_TURNS_ASSUMED} (one calling tools, one "
                     "answering). max_cost reserves the high end per row")
    if run.params.get("max_tokens") is None and kind.default_max_tokens is None and not embedding:
        notes.append(f"max_tokens is not set: the high end assumes {limit} output tokens per request; "
                     "set max_tokens for a firm bound")
    if effort is not None:
        notes.append(f"reasoning_effort={effort!r}: reasoning tokens are billed as output; " + (
            "max_tokens bounds reasoning and answer together" if run.params.get("max_tokens") else
            f"the high end assumes {constants.REASONING_TOKENS_ESTIMATE[effort]:,} of them per request (a guess: "
            "set max_tokens for a firm bound)"))
    if tokenizer == APPROXIMATION:
        notes.append(f"input tokens are {APPROXIMATION} (no tokenizer for this model here)")
    if run.output.schema is not None:
        notes.append("the output schema sent with each request adds input tokens not counted here")
    if getattr(run.prompts, "media", False):
        notes.append("images and documents are counted by the provider's documented rules (llmframe/cost/media.py)")
    if run.packing is not None:
        notes.append(f"rows_per_request={run.packing.size}: {n:,} requests for {rows_to_send:,} rows, the "
                     "template's fixed text once per request")
    cache_note, _ = levers.prompt_cache_note(run, pricer, tokens)
    if cache_note is not None:
        notes.append(cache_note)
    write_note, write_low, write_high = levers.cache_write_premium(run, pricer, tokens, mode)
    if write_note is not None:
        notes.append(write_note)
    return Estimate(
        model=run.model,
        mode=mode,
        rows=len(run.prompts),
        skipped=len(run.prompts.skipped),
        requests=len(run.keys),
        uncached_rows=int(run.weights[missing].sum()),
        uncached_requests=n,
        input_tokens=int(tokens.sum()),
        tokenizer=tokenizer,
        output_tokens=(low * n, int(np.asarray(high_output).sum()) if tools is not None else limit * n),
        cost=None if low_costs is None else (float(low_costs.sum()) + write_low, float(high_costs.sum()) + write_high),
        price=pricer.describe(),
        samples=[run.prompts.messages(int(i)) for i in send_rows[: constants.ESTIMATE_SAMPLES]],
        notes=notes,
        rows_per_request=1 if run.packing is None else run.packing.size,
        distinct_rows=rows_to_send,
    )
