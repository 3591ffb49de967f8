"""Dry runs: what a run would send and cost, computed from the plan alone; nothing is sent.

Input tokens are counted with tiktoken for OpenAI models when it is installed and its encoding
loads (tiktoken downloads encodings once, then reads its cache); otherwise, and for other
providers, they are approximated as characters / 4, the figure the rate limiter also uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import constants
from .prices import Pricer
from ..plan.request import Request

if TYPE_CHECKING:
    from ..plan.build import Plan
    from ..stores.diskcache import Store

MODES = ("online", "batch")
APPROXIMATION = f"approximate: characters / {constants.CHARS_PER_TOKEN}"
_PER_MESSAGE, _PER_REPLY = 3, 3  # OpenAI's chat framing: tokens around each message, and priming the reply


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

    def to_dict(self) -> dict:
        """Plain JSON-serialisable values."""
        return asdict(self)

    def __repr__(self) -> str:
        cost = "unknown (no price: pass prices=)" if self.cost is None else f"${self.cost[0]:.4g} to ${self.cost[1]:.4g}"
        lines = [
            f"Estimate for {self.model} ({self.mode}): nothing was sent",
            f"  rows {self.rows}, skipped {self.skipped}, distinct requests {self.requests}",
            f"  to send: {self.uncached_requests} requests for {self.uncached_rows} rows (the rest are cached)",
            f"  input tokens {self.input_tokens} ({self.tokenizer})",
            f"  output tokens {self.output_tokens[0]} to {self.output_tokens[1]}",
            f"  cost {cost}",
            *(f"  note: {n}" for n in self.notes),
        ]
        for i, messages in enumerate(self.samples):
            lines.append(f"  sample {i + 1}:")
            lines += [f"    [{m.get('role')}] {m.get('content')}" for m in messages]
        return "\n".join(lines)


def _rendered(run: Plan, rows: np.ndarray):
    """The rendered rows at these positions, a chunk at a time (prompts are rendered on demand)."""
    for start in range(0, len(rows), constants.RENDER_CHUNK_ROWS):
        yield from run.prompts.rows_at(rows[start : start + constants.RENDER_CHUNK_ROWS])


def _chars(run: Plan, rows: np.ndarray) -> np.ndarray:
    """Characters of the messages of the rows at these positions."""
    return np.fromiter(map(run.prompts.chars_of, _rendered(run, rows)), dtype=np.int64, count=len(rows))


def _approximate(chars: np.ndarray) -> np.ndarray:
    return -(-chars // constants.CHARS_PER_TOKEN)  # ceil, as ratelimit.estimate_tokens


def output_limit(provider: str, max_tokens: int | None) -> int:
    """The most output tokens one request can take: max_tokens, Anthropic's default, or a documented guess."""
    if max_tokens is None and provider == "anthropic":
        max_tokens = constants.ANTHROPIC_MAX_TOKENS  # what llmframe sends when none is set
    return int(max_tokens or constants.OUTPUT_TOKENS_GUESS)


def request_cost(pricer: Pricer, provider: str, max_tokens: int | None, *, outputs: bool = True
                 ) -> Callable[[Request], float]:
    """An upper-leaning USD estimate of one request before it is sent (input chars / 4, output at its limit;
    none for an embedding, outputs=False)."""
    limit = output_limit(provider, max_tokens) if outputs else 0

    def cost(request: Request) -> float:
        chars = sum(len(m.get("content") or "") for m in request.messages)
        return pricer.cost(-(-chars // constants.CHARS_PER_TOKEN), limit) or 0.0

    return cost


@functools.cache
def _encoding(model: str):
    """tiktoken's encoding for an OpenAI model name, or None (not installed, unknown model, or not loadable)."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.encoding_for_model(model)
    except Exception:  # an unknown model (KeyError), or the encoding cannot be downloaded (offline)
        return None


def _tiktoken_counts(run: Plan, rows: np.ndarray, encoding) -> np.ndarray:
    counts = np.empty(len(rows), dtype=np.int64)
    for n, row in enumerate(_rendered(run, rows)):
        texts = [m.get("content") or "" for m in run.prompts.messages_of(row)]
        counts[n] = sum(len(t) for t in encoding.encode_ordinary_batch(texts)) + _PER_MESSAGE * len(texts) + _PER_REPLY
    return counts


def input_tokens(run: Plan, first_row: np.ndarray) -> tuple[np.ndarray, str]:
    """Input tokens of each distinct request, and how they were counted."""
    encoding = _encoding(run.provider.model) if run.provider.name == "openai" else None
    if encoding is not None:
        return _tiktoken_counts(run, first_row, encoding), f"tiktoken:{encoding.name}"
    return _approximate(_chars(run, first_row)), APPROXIMATION


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
    pricer = Pricer(run.model, prices=run.pricer.overrides if run.pricer else None, batch=mode == "batch")
    pricer.warn_unknown()
    missing = _uncached(run, store)
    send_rows = run.first_row[missing]
    tokens, tokenizer = input_tokens(run, send_rows)
    embedding = run.embedding is not None  # vectors: no output tokens at all
    limit = 0 if embedding else output_limit(run.provider.name, run.params.get("max_tokens"))
    low = 0 if embedding else constants.MIN_OUTPUT_TOKENS
    n = len(send_rows)
    low_costs = pricer.costs(tokens, np.full(n, low))
    high_costs = pricer.costs(tokens, np.full(n, limit))
    notes = []
    if run.params.get("max_tokens") is None and run.provider.name != "anthropic" and not embedding:
        notes.append(f"max_tokens is not set: the high end assumes {limit} output tokens per request; "
                     "set max_tokens for a firm bound")
    if tokenizer == APPROXIMATION:
        notes.append(f"input tokens are {APPROXIMATION} (no tokenizer for this model here)")
    if run.output.schema is not None:
        notes.append("the output schema sent with each request adds input tokens not counted here")
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
        output_tokens=(low * n, limit * n),
        cost=None if low_costs is None else (float(low_costs.sum()), float(high_costs.sum())),
        price=pricer.describe(),
        samples=[run.prompts.messages(int(i)) for i in send_rows[: constants.ESTIMATE_SAMPLES]],
        notes=notes,
    )
