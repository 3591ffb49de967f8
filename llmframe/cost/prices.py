"""Prices per token: the genai-prices database (bundled with the package, read offline), or the user's prices=.

An unknown model has no price: its cost is None, with one warning per model and process, never a guess.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..errors import ConfigError

_WARNED: set[str] = set()  # models already warned about, so a sweep of 40 runs warns once

# What a prices= entry may set, in USD per million tokens (genai-prices' own names).
PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
_BATCH_KEYS = tuple(f"batch_{k}" for k in PRICE_KEYS)


@dataclass(frozen=True)
class _Rate:
    """One price in USD per million tokens: a base rate, and (start, rate) tiers by the request's input tokens."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()

    def per_token(self, input_tokens: np.ndarray) -> np.ndarray:
        """The rate per token for each request, by its total input tokens (a crossed tier applies to all tokens)."""
        rate = np.full(input_tokens.shape, self.base, dtype=np.float64)
        for start, value in self.tiers:  # sorted ascending: later (higher) tiers overwrite
            rate[input_tokens > start] = value
        return rate / 1e6


def _rate(value: Any) -> _Rate | None:
    """A genai-prices price (Decimal or TieredPrices) or a user's number, as a _Rate."""
    if value is None:
        return None
    if hasattr(value, "tiers"):
        return _Rate(float(value.base), tuple((int(t.start), float(t.price)) for t in value.tiers))
    return _Rate(float(value))


def check_prices(prices: Any) -> dict[str, dict]:
    """Validate a prices= mapping {"provider:model": {"input_mtok": ..., "output_mtok": ...}}; ConfigError if wrong."""
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise ConfigError('prices must be a dict like {"openai:my-model": {"input_mtok": 0.3, "output_mtok": 1.2}}')
    allowed = PRICE_KEYS + _BATCH_KEYS
    for model, entry in prices.items():
        if not isinstance(model, str) or ":" not in model:
            raise ConfigError(f'prices keys are "provider:model" strings, got {model!r}')
        if not isinstance(entry, Mapping) or not {"input_mtok", "output_mtok"} <= set(entry):
            raise ConfigError(f"prices[{model!r}] needs input_mtok and output_mtok (USD per million tokens)")
        unknown = sorted(set(entry) - set(allowed))
        if unknown:
            raise ConfigError(f"prices[{model!r}] has unknown key(s) {unknown}; allowed: {list(allowed)}")
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"prices[{model!r}][{key!r}] must be a number >= 0 (USD per million tokens)")
    return {model: dict(entry) for model, entry in prices.items()}


class Pricer:
    """The cost of requests to one model: cost(input, output, cached) in USD, or None when the price is unknown."""

    def __init__(self, model: str, *, prices: Mapping | None = None, batch: bool = False, price_id: str | None = None):
        """price_id: the provider's id in genai-prices (Provider.price_id); None looks up prices= alone."""
        self.model = model
        self.price_id = price_id
        self.overrides = prices
        self.batch = batch  # native batch jobs are billed at the batch price (about half)
        self.source: str | None = None  # "prices=" or "genai-prices"; None when unknown
        self._input = self._output = self._cached = self._write = None
        entry = (prices or {}).get(model)
        if entry is not None:
            pick = (lambda k: entry.get(f"batch_{k}", entry.get(k))) if batch else entry.get
            self._input, self._output, self._cached, self._write = (_rate(pick(k)) for k in PRICE_KEYS)
            self.source = "prices="
        else:
            found = _database_price(model, price_id, batch)
            if found is not None:
                rates = (_rate(getattr(found, k, None)) for k in PRICE_KEYS)
                self._input, self._output, self._cached, self._write = rates
                if self._input is not None and self._output is None:
                    self._output = _Rate(0.0)  # priced on input alone: an embedding model, which outputs no tokens
                self.source = "genai-prices"
        if self._cached is None:
            self._cached = self._input  # no cache discount listed: cached input is billed in full
        if self._write is None:
            self._write = self._input  # no cache-write price listed: writing the cache costs plain input

    @classmethod
    def for_run(cls, model: str, prices: Mapping | None, *, warn: bool, batch: bool = False,
                price_id: str | None = None) -> Pricer:
        """The pricer of a run (prices= as check_prices returned it); warn=True warns once if the model has no price."""
        pricer = cls(model, prices=prices, batch=batch, price_id=price_id)
        if warn:  # only where a cost was asked for: a local server's users need no price
            pricer.warn_unknown()
        return pricer

    @property
    def known(self) -> bool:
        """True when this model has a price (from genai-prices or prices=)."""
        return self._input is not None and self._output is not None

    def warn_unknown(self) -> None:
        """One warning per model and process: costs are None for it."""
        if self.known or self.model in _WARNED:
            return
        _WARNED.add(self.model)
        warnings.warn(
            f"no price known for {self.model!r}: its cost is reported as None. Pass prices={{{self.model!r}: "
            '{"input_mtok": ..., "output_mtok": ...}} (USD per million tokens) to price it',
            UserWarning,
            stacklevel=3,
        )

    def costs(self, input_tokens, output_tokens, cached_input_tokens=None,
              cache_write_tokens=None) -> np.ndarray | None:
        """USD per request for arrays of token counts (None when the price is unknown).

        Input tokens are the whole prompt: of them, cached ones are billed at the cache-read rate and
        cache writes (Anthropic's cache_creation_input_tokens) at the cache-write rate.
        """
        if not self.known:
            return None
        inp = np.asarray(input_tokens, dtype=np.float64)
        out = np.asarray(output_tokens, dtype=np.float64)
        cached = np.zeros_like(inp) if cached_input_tokens is None else np.asarray(cached_input_tokens, np.float64)
        cached = np.minimum(cached, inp)
        written = np.zeros_like(inp) if cache_write_tokens is None else np.asarray(cache_write_tokens, np.float64)
        written = np.minimum(written, inp - cached)
        return ((inp - cached - written) * self._input.per_token(inp) + cached * self._cached.per_token(inp)
                + written * self._write.per_token(inp) + out * self._output.per_token(inp))

    def cost(self, input_tokens: float, output_tokens: float, cached_input_tokens: float = 0,
             cache_write_tokens: float = 0) -> float | None:
        """USD for one request (None when the price is unknown); plain arithmetic on the hot path when untiered."""
        if not self.known:
            return None
        if self._input.tiers or self._output.tiers or self._cached.tiers or self._write.tiers:
            return float(self.costs([input_tokens], [output_tokens], [cached_input_tokens], [cache_write_tokens])[0])
        cached = min(cached_input_tokens, input_tokens)
        written = min(cache_write_tokens, input_tokens - cached)
        return ((input_tokens - cached - written) * self._input.base + cached * self._cached.base
                + written * self._write.base + output_tokens * self._output.base) / 1e6

    def describe(self) -> dict | None:
        """The base rates in USD per million tokens, for reports; None when unknown."""
        if not self.known:
            return None
        return {"input_mtok": self._input.base, "output_mtok": self._output.base,
                "cache_read_mtok": self._cached.base,
                "cache_write_mtok": self._write.base, "batch": self.batch, "source": self.source}


def _database_price(model: str, provider_id: str | None, batch: bool):
    """genai-prices' ModelPrice for "provider:model" now (batch variant if asked), or None if it has none.

    provider_id: genai-prices' id of the provider, which its class declares (the plan's target carries it).
    """
    if provider_id is None:
        return None
    name = model.partition(":")[2]
    try:
        from genai_prices import data_snapshot
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    snapshot = data_snapshot.get_snapshot()  # the bundled data: llmframe never starts genai-prices' auto-update
    try:
        _, info = snapshot.find_provider_model(name, None, provider_id, None)
    except LookupError:
        return None
    context = {"processing": "batch"} if batch else None
    return info.get_prices(datetime.now(tz=timezone.utc), context)
