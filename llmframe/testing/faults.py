"""Fault injection for the simulator: per-key rate limits, injected errors, spent quota, hangs, drips, resets,
bad bodies, bad JSON, fields of the wrong type, and response formats a server refuses."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Faults that change a response's body or connection; drawn after the HTTP errors, in this order (new
# ones go last, so a seed keeps drawing the same faults). invalid_json and schema_violation spoil only
# structured answers (response_format json_schema or json_object); drawn for another request, they
# leave it alone, so every request takes one draw all the same.
_BODY_FAULTS = ("hang", "reset", "malformed", "html", "empty_choices", "invalid_json", "schema_violation",
                "null_finish", "retyped", "quota", "drip")
_FORMATS = ("text", "json_object", "json_schema")  # the response_format types the API knows

# What OpenAI and Gemini say when the account's quota is spent (Anthropic's words are in its dialect).
QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."

# OpenAI's rate-limit headers of a kind of limit ("requests", "tokens"): limit, remaining, reset.
_OPENAI_HEADERS = ("x-ratelimit-limit-{}", "x-ratelimit-remaining-{}", "x-ratelimit-reset-{}")

HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Faults:
    """What a simulator does wrong, and how often; all off by default. Frozen: assign a new one to change it."""

    rpm: int | None = None  # requests per minute per API key
    tpm: int | None = None  # tokens (prompt + max_tokens, else completion) per minute per API key
    # Seconds of the limit a key may spend at once. OpenAI enforces limits over shorter windows than a
    # minute ("60,000 rpm may be enforced as 1,000 requests per second"); 60 lets a whole minute burst.
    burst_seconds: float = 60.0
    error_rates: dict[int, float] = field(default_factory=dict)  # HTTP status -> probability per request
    retry_after: float | None = 0.05  # seconds advised by injected 429 and 503; None sends no header
    latency: Callable[[], float] | None = None  # seconds per answer; overrides the simulator's latency
    # Probabilities per request, exclusive of each other, so with error_rates they sum to at most 1.
    hang_rate: float = 0.0  # never answer, until the client leaves or the server stops
    reset_rate: float = 0.0  # drop the connection halfway through the body
    malformed_rate: float = 0.0  # 200 with truncated JSON
    html_rate: float = 0.0  # 502 with an HTML page, as from a proxy
    empty_choices_rate: float = 0.0  # 200 with "choices": []
    # Structured requests only, 200 with finish_reason "stop": an answer json.loads refuses (prose or
    # a code fence around the JSON, or the JSON cut short); json_object requests too.
    invalid_json_rate: float = 0.0
    # json_schema requests only: valid JSON that breaks the schema (a required property missing, a
    # wrong type, a value outside an enum).
    schema_violation_rate: float = 0.0
    null_finish_rate: float = 0.0  # 200 with "finish_reason": null, as some OpenAI-compatible servers send
    # 200 with well-formed JSON whose fields have the wrong type: reply path -> the value to put there
    # (a callable gets the value that was there). Paths are dotted, in the route's own reply shape, list
    # positions as numbers: {"choices.0.message.content": 7} or {"usage.completion_tokens": "12"}.
    retyped_rate: float = 0.0
    retyped: dict[str, Any] = field(default_factory=dict)
    # response_format types refused with HTTP 500 and a validation message, before any fault is drawn,
    # as llama.cpp's Python server refuses json_schema ("Input should be 'text' or 'json_object'").
    refused_formats: frozenset[str] = frozenset()
    # 429 saying the account's quota or credit is spent, in the vendor's words (OpenAI insufficient_quota,
    # Anthropic enforced_spend_limit_reached; Gemini's looks like any other 429), with no Retry-After.
    quota_rate: float = 0.0
    drip_rate: float = 0.0  # 200 whose body trickles in one byte every drip_seconds: no single read is slow
    drip_seconds: float = 0.05
    # rows_per_request's packed answers (testing.packed): per item, its answer left out, or given twice
    pack_drop_rate: float = 0.0
    pack_duplicate_rate: float = 0.0
    seed: int | None = None  # seeds the fault draws (latency callables own their randomness)

    def __post_init__(self) -> None:
        for name, limit in (("rpm", self.rpm), ("tpm", self.tpm), ("burst_seconds", self.burst_seconds),
                            ("drip_seconds", self.drip_seconds)):
            if limit is not None and limit <= 0:
                raise ValueError(f"{name} must be positive, not {limit}")
        if any(not 400 <= status <= 599 for status in self.error_rates):
            raise ValueError(f"error_rates keys must be HTTP error statuses, not {sorted(self.error_rates)}")
        rates = [p for _, p in self._choices()]
        if any(not 0.0 <= p <= 1.0 for p in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError("fault rates must each be in [0, 1] and sum to at most 1")
        if self.retyped_rate and not self.retyped:
            raise ValueError("retyped_rate needs retyped: the reply paths to change and their values")
        if unknown := set(self.refused_formats) - set(_FORMATS):
            raise ValueError(f"refused_formats must be among {_FORMATS}, not {sorted(unknown)}")

    def _choices(self) -> list[tuple[int | str, float]]:
        """The injectable faults with their probabilities: HTTP statuses first, then the named faults."""
        named = [(name, getattr(self, f"{name}_rate")) for name in _BODY_FAULTS]
        return [*self.error_rates.items(), *named]

    @staticmethod
    def lognormal(median_s: float, sigma: float, seed: int | None = None) -> Callable[[], float]:
        """A latency distribution with the given median, and a long tail that grows with sigma."""
        rng = random.Random(seed)
        mu = math.log(median_s)
        return lambda: rng.lognormvariate(mu, sigma)


def retype(reply: dict, changes: dict[str, Any]) -> dict:
    """The reply with each dotted path's value replaced; a callable value is given the value that was there."""
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = reply
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        old = node[key] if isinstance(node, list) else node.get(key)
        node[key] = value(old) if callable(value) else value
    return reply


def refusal(kind: str | None, refused: frozenset[str]) -> str | None:
    """The validation message of a server that refuses this response_format type, or None if it takes it."""
    if kind is None or kind not in refused:
        return None
    allowed = [f"'{k}'" for k in _FORMATS if k not in refused]
    expected = " or ".join(allowed) if len(allowed) < 3 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"
    return (f"1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be "
            f"{expected} [type=literal_error, input_value='{kind}', input_type=str]")


def duration(seconds: float) -> str:
    """Format a wait as OpenAI does in x-ratelimit-reset-*: "20ms", "1s", "1.5s", "6m0s", "1h2m3s"."""
    ms = _ceil_ms(seconds)
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    s, frac = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    text = f"{s}" + (f".{frac:03d}".rstrip("0") if frac else "") + "s"
    return (f"{h}h{m}m" if h else f"{m}m" if m else "") + text


def retry_headers(seconds: float) -> dict[str, str]:
    """retry-after-ms (exact, rounded up) and retry-after (whole seconds, rounded up) for a wait."""
    ms = _ceil_ms(seconds)
    return {"retry-after-ms": str(ms), "retry-after": str(-(-ms // 1000))}


def _ceil_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up so an advised wait is never too short."""
    # Rounding to the nanosecond first drops float noise, so 0.5 s is 500 ms and not 501.
    return max(0, math.ceil(round(seconds * 1000, 6)))


class _Bucket:
    """A continuous-refill token bucket, full when created."""

    __slots__ = ("level", "stamp")

    def __init__(self, capacity: float, now: float):
        self.level = float(capacity)
        self.stamp = now

    def refill(self, per_minute: int, capacity: float, now: float) -> None:
        """Add what flowed in since the last call, at per_minute, up to capacity."""
        # Requests are timed at arrival but may be settled out of order, so time never runs back.
        self.level = min(capacity, self.level + max(0.0, now - self.stamp) * per_minute / 60)
        self.stamp = max(self.stamp, now)


class FaultState:
    """The mutable side of a Faults: its random draws and the buckets per API key."""

    def __init__(self, faults: Faults):
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._limits = {kind: n for kind, n in (("requests", faults.rpm), ("tokens", faults.tpm)) if n is not None}
        self._buckets: dict[bytes, dict[str, _Bucket]] = {}

    def chance(self, probability: float) -> bool:
        """True with this probability, from the faults' seeded draws."""
        return probability > 0 and self._rng.random() < probability

    def _levels(self, key: str, now: float) -> dict[str, tuple[int, float, _Bucket]]:
        """(limit per minute, capacity, bucket refilled to now) of the key per configured limit, by header suffix."""
        if not self._limits:
            return {}
        # Keyed by a digest, so the simulator never keeps a credential.
        buckets = self._buckets.setdefault(hashlib.sha256(key.encode()).digest(), {})
        levels = {}
        for kind, limit in self._limits.items():
            capacity = limit * min(60.0, self.faults.burst_seconds) / 60
            bucket = buckets.setdefault(kind, _Bucket(capacity, now))
            bucket.refill(limit, capacity, now)
            levels[kind] = limit, capacity, bucket
        return levels

    def admit(self, key: str, tokens: int, now: float) -> tuple[str | None, float]:
        """Take a request and `tokens` from the key's buckets; else take nothing, return (rpm/tpm, seconds to wait)."""
        cost = {"requests": 1, "tokens": tokens}
        levels = self._levels(key, now)
        waits = {}
        for kind, (limit, capacity, bucket) in levels.items():
            if cost[kind] > capacity:
                waits[kind] = math.inf  # can never fit, as OpenAI's "request too large"
            elif cost[kind] > bucket.level:
                waits[kind] = (cost[kind] - bucket.level) * 60 / limit
        if waits:
            # Nothing was taken, so the longest wait is exact: after it, every bucket has room.
            kind = max(waits, key=waits.__getitem__)
            return ("rpm" if kind == "requests" else "tpm"), waits[kind]
        for kind, (_, _, bucket) in levels.items():
            bucket.level -= cost[kind]
        return None, 0.0

    def charge(self, key: str, tokens: int, now: float) -> None:
        """Bill tokens known only after the answer; the bucket may go negative, as OpenAI bills actual usage."""
        if "tokens" in self._limits:
            self._levels(key, now)["tokens"][2].level -= tokens

    def levels(self, key: str, now: float) -> dict[str, tuple[int, int, float]]:
        """(limit per minute, whole units remaining, seconds until full) per configured limit: "requests", "tokens"."""
        return {
            kind: (limit, max(0, math.floor(bucket.level)), (capacity - bucket.level) * 60 / limit)
            for kind, (limit, capacity, bucket) in self._levels(key, now).items()
        }

    def headers(self, key: str, now: float, names: tuple[str, str, str] = _OPENAI_HEADERS,
                reset: Callable[[float], str] = duration) -> dict[str, str]:
        """Rate-limit headers per configured limit, named by `names` (default OpenAI's), `reset` writing the wait."""
        out = {}
        for kind, (limit, remaining, until) in self.levels(key, now).items():
            out[names[0].format(kind)] = str(limit)
            out[names[1].format(kind)] = str(remaining)
            out[names[2].format(kind)] = reset(until)
        return out

    def draw(self) -> int | str | None:
        """Pick this request's fault: an HTTP status, a fault name, or None; one draw per request."""
        u = self._rng.random()
        for fault, p in self.faults._choices():
            if u < p:
                return fault
            u -= p
        return None

    def latency(self, default: float) -> float:
        """Seconds to wait before answering."""
        return self.faults.latency() if self.faults.latency is not None else default
