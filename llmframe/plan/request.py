"""Request and Response, the validated generation parameters, and the canonical content key."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .. import constants
from ..errors import ConfigError


# One encoder for every cache value: json.dumps with options builds a new encoder per call.
def loads(text: str | bytes) -> Any:
    """json.loads, three times faster (orjson) on the hot paths: cache reads and replies."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN and other literals only the standard library accepts
        return json.loads(text)


_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_kept = json.encoder.encode_basestring  # a str as a JSON string, non-ASCII kept (as ensure_ascii=False)


def _string(text: str) -> str:
    """A str as a JSON string, non-ASCII kept; a lone surrogate (a reply's JSON "\ud800") escaped, since no
    UTF-8 file or database can hold it as it is."""
    out = _kept(text)
    if not out.isascii():
        try:
            out.encode()
        except UnicodeEncodeError:
            return json.encoder.encode_basestring_ascii(text)
    return out


@dataclass(slots=True)
class Request:
    """One call to a model: messages plus the parameters shared by the whole run."""

    key: str
    messages: list[dict]
    params: dict


@dataclass(slots=True)
class Response:
    """What came back for one request: an answer, or an error text."""

    text: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    cached: bool = False
    headers: Mapping[str, str] | None = None  # the reply's headers, for the rate limiter; never cached
    parsed: Any = None  # the validated structured answer; never cached (the raw text is, and is re-checked)
    cached_input_tokens: int = 0  # input tokens the provider served from its prompt cache (billed lower)
    latency: float | None = None  # seconds of the attempt that answered; cached with the answer, not in the key
    batch: bool = False  # answered by a provider's batch API (billed at batch prices)
    vector: Any = None  # an embedding request's answer: a float32 vector (cached in binary: plan.vector_value)
    tool_calls: Any = None  # tools=: the model asks for tool calls (a plan.tools.ToolTurn); never cached
    transcript: str | None = None  # tools=: the row's tool calls and results as JSON, cached with the answer
    reasoning_tokens: int = 0  # of output_tokens, a reasoning model's thinking (billed as output); cached
    confidence: float | None = None  # from the answer's token log-probabilities, where the provider gave them
    cache_write_tokens: int = 0  # of input_tokens, those written to the provider's prompt cache (Anthropic bills more)

    def to_cache(self, model: str, created: float) -> str:
        """A compact JSON text for the cache (only successes are ever stored).

        The model and the time are kept so the cache can be pruned by model or age. Latency and cached
        input tokens come next, so values written before they existed still read; a trailing 1 marks a
        batch answer (0 an online one, where a tools run's transcript, then reasoning tokens, then a
        confidence from log-probabilities, then prompt-cache write tokens follow, as far as there are any).
        """
        return Response.many_to_cache([self], model, created)[0]

    @staticmethod
    def many_to_cache(responses: list[Response], model: str, created: float) -> list[str]:
        """to_cache of many answers at once: formatted directly, a few times faster than json.dumps of each."""
        tail = f",{_compact(model)},{round(created, 3)!r},"  # a float's repr is its JSON (json uses it too)
        string = _string
        return [
            f"[{'null' if r.text is None else string(r.text)},{int(r.input_tokens)},{int(r.output_tokens)},"
            f"{'null' if r.finish_reason is None else string(r.finish_reason)}{tail}"
            f"{'null' if r.latency is None else round(float(r.latency), 4)},{int(r.cached_input_tokens)}"
            f"{_tail(r)}"
            for r in responses
        ]

    @classmethod
    def many_from_cache(cls, values: list[str]) -> list[Response]:
        """The responses stored by to_cache, marked as cached; one JSON parse for the whole chunk."""
        rows = loads("[" + ",".join(values) + "]")
        return [cls(row[0], row[1], row[2], row[3], None, True, None, None,
                    row[7] if len(row) > 7 else 0, row[6] if len(row) > 6 else None,
                    len(row) > 8 and row[8] == 1, reasoning_tokens=(row[10] or 0) if len(row) > 10 else 0,
                    confidence=row[11] if len(row) > 11 else None,
                    cache_write_tokens=(row[12] or 0) if len(row) > 12 else 0) for row in rows]

    @classmethod
    def failure(cls, error: str) -> Response:
        """A failed request with its error text."""
        return cls(error=error)

    def rejected(self, error: str) -> Response:
        """A failure made of this answer: no text, but its tokens, which were spent all the same."""
        return Response(error=error, input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                        cached_input_tokens=self.cached_input_tokens, latency=self.latency, batch=self.batch,
                        reasoning_tokens=self.reasoning_tokens, cache_write_tokens=self.cache_write_tokens)


@dataclass(slots=True)
class Embedded:
    """What an embedding request brought back: one float32 vector per input, in order, and the tokens billed."""

    vectors: np.ndarray  # shape (inputs, dimensions), float32
    input_tokens: int = 0
    headers: Mapping[str, str] | None = None  # for the rate limiter; never cached


def _tail(r: Response) -> str:
    """A cached answer's end: the batch flag, then a tools run's transcript (or null), its reasoning tokens and a
    confidence, then prompt-cache write tokens, each written only where it or a later one is there: older values
    read as they did."""
    if r.cache_write_tokens:
        transcript = "null" if r.transcript is None else _string(r.transcript)
        confidence = "null" if r.confidence is None else repr(float(r.confidence))
        return f",{int(r.batch)},{transcript},{int(r.reasoning_tokens)},{confidence},{int(r.cache_write_tokens)}]"
    if r.confidence is not None:
        transcript = "null" if r.transcript is None else _string(r.transcript)
        return f",{int(r.batch)},{transcript},{int(r.reasoning_tokens)},{float(r.confidence)!r}]"
    if r.reasoning_tokens:
        transcript = "null" if r.transcript is None else _string(r.transcript)
        return f",{int(r.batch)},{transcript},{int(r.reasoning_tokens)}]"
    return (",1]" if r.batch else "]") if r.transcript is None else f",{int(r.batch)},{_string(r.transcript)}]"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal content always gives equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def key_prefix(provider: str, model: str, params: dict, schema: Any = None, endpoint: str | None = None, *,
               api: str | None = None) -> bytes:
    """The part of every key that is the same for all rows of a run.

    endpoint: the server's, when it is not the provider's official one (None); absent from the key
    otherwise, so keys made before endpoints were part of it stay the same. api: OpenAI's Responses API,
    in the key only when it is not chat completions (whose keys stay as they were).
    """
    head = {
        "v": constants.CACHE_KEY_VERSION,
        "provider": provider,
        "model": model,
        "params": params,
        "schema": schema,
    }
    if endpoint is not None:
        head["endpoint"] = endpoint
    if api not in (None, "chat"):
        head["api"] = api
    return canonical_json(head).encode()


def content_key(prefix: bytes, messages_json: str) -> str:
    """The cache key of one request, from the run's prefix and the canonical JSON of its messages."""
    digest = hashlib.blake2b(prefix, digest_size=16)
    digest.update(messages_json.encode())  # UnicodeEncodeError here means the text cannot be sent either
    return digest.hexdigest()


_KEY_BYTES = 16


def content_digests(prefix: bytes, texts: Iterable[str]) -> Iterable[bytes]:
    """The raw content keys of many requests: content_key(prefix, text) is their hex spelling."""
    base = hashlib.blake2b(prefix, digest_size=_KEY_BYTES)
    for text in texts:
        digest = base.copy()  # the prefix is hashed once per run, not once per row
        digest.update(text.encode())
        yield digest.digest()


class Keys(Sequence):
    """Content keys held as raw 16-byte digests (a million keys in 16 MB), spelled in hex when asked for."""

    def __init__(self, digests: np.ndarray):
        self.digests = digests  # shape (n, 2), uint64: the digest bytes, two words per key

    @classmethod
    def from_hex(cls, keys: Sequence[str]) -> Keys:
        """Keys from their hex spelling."""
        raw = bytes.fromhex("".join(keys))
        return cls(np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2).copy())

    def __len__(self) -> int:
        return len(self.digests)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return self._hex(self.digests[item])
        return self.digests[item].tobytes().hex()

    def take(self, positions: Sequence[int]) -> list[str]:
        """The keys at these positions, in hex."""
        return self._hex(self.digests[np.asarray(positions, dtype=np.int64)])

    @staticmethod
    def _hex(digests: np.ndarray) -> list[str]:
        text = np.ascontiguousarray(digests).tobytes().hex()
        width = 2 * _KEY_BYTES
        return [text[i : i + width] for i in range(0, len(text), width)]


def distinct(digests: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicate keys: (row -> position among the distinct keys, -1 where not valid; first row of each).

    Distinct keys come in first-seen order. Hashing the first 64 bits is exact unless two different
    keys share them (about one chance in 10^8 at a million rows), which is checked and then settled
    on all 128 bits.
    """
    rows = np.flatnonzero(valid)
    codes, count = _first_seen_codes(digests[rows, 0])
    first = np.empty(count, dtype=np.int64)
    first[codes[::-1]] = rows[::-1]  # reversed assignment leaves each key's first row
    if not np.array_equal(digests[first[codes], 1], digests[rows, 1]):
        pairs = np.ascontiguousarray(digests[rows]).view(np.dtype((np.void, 2 * 8))).ravel()
        _, index, inverse = np.unique(pairs, return_index=True, return_inverse=True)
        order = np.argsort(index, kind="stable")  # np.unique sorts: put keys back in first-seen order
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        codes, first = rank[inverse.ravel()], rows[index[order]]
    row_to_key = np.full(len(valid), -1, dtype=np.int64)
    row_to_key[rows] = codes
    return row_to_key, first


def _first_seen_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Each value's position among the distinct values in first-seen order (as pandas.factorize), and their number.

    Sorting finds the usual case, all distinct (codes 0..n-1), in a fifth of a hash's time; duplicates are
    hashed (Arrow's dictionary encoding keeps first-seen order), as fast as pandas and three times numpy's sort.
    """
    ordered = np.sort(values)
    if not (ordered[1:] == ordered[:-1]).any():
        return np.arange(len(values), dtype=np.int64), len(values)
    encoded = pa.array(values).dictionary_encode()
    return encoded.indices.to_numpy().astype(np.int64), len(encoded.dictionary)


# The generation parameters with keyword arguments of their own, in the order the request has them.
KEYWORD_PARAMS = ("temperature", "top_p", "max_tokens", "seed", "stop", "reasoning_effort")
# Set through their own keyword arguments (or by llmframe itself), never through params=.
_OWN_PARAMS = frozenset({*KEYWORD_PARAMS, "model", "messages"})


def _plain_number(value: Any) -> int | float | None:
    """value as a Python int or float (numpy's included: np.int64(5) is 5); None if it is no finite number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    return value if math.isfinite(value) else None


def _number(name: str, value: Any, low: float, high: float) -> float:
    number = _plain_number(value)
    if number is None:
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value!r}")
    return number


def positive_number(name: str, value: Any) -> float | None:
    """value (as a Python number) if it is None or a number > 0; else a ConfigError naming the parameter."""
    if value is None:
        return None
    number = _plain_number(value)
    if number is None or number <= 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    return number


def integer_at_least(name: str, value: Any, low: int) -> int:
    """value (as a Python int), if it is an integer >= low; else a ConfigError naming the parameter."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def generation_params(
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    stop: str | list[str] | None = None,
    reasoning_effort: str | None = None,
    params: dict | None = None,
) -> dict:
    """Validate the generation parameters; the result has only the ones that were set."""
    out: dict[str, Any] = {}
    # As floats: temperature=0 and temperature=0.0 ask the same, so they share a cache key.
    if temperature is not None:
        out["temperature"] = float(_number("temperature", temperature, 0.0, 2.0))
    if top_p is not None:
        out["top_p"] = float(_number("top_p", top_p, 0.0, 1.0))
    if max_tokens is not None:
        out["max_tokens"] = integer_at_least("max_tokens", max_tokens, 1)
    if seed is not None:
        out["seed"] = integer_at_least("seed", seed, -(2**63))
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
            raise ConfigError(f"stop must be a non-empty string or a list of them, got {stop!r}")
        out["stop"] = list(stops)
    if reasoning_effort is not None:
        if reasoning_effort not in constants.REASONING_EFFORTS:
            raise ConfigError(f"reasoning_effort must be one of {constants.REASONING_EFFORTS}, "
                              f"got {reasoning_effort!r}")
        out["reasoning_effort"] = reasoning_effort
    if params:
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise ConfigError("params must be a dict of provider parameter names to values")
        clash = sorted(set(params) & _OWN_PARAMS)
        if clash:
            raise ConfigError(f"params repeats {clash}: pass them as keyword arguments of their own")
        try:
            canonical_json(params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"params must be JSON-serialisable: {exc}") from None
        out.update(params)
    return out
