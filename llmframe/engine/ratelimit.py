"""Client-side rate limits: RPM and TPM buckets, limits learned from headers, one shared cool-down, max_wait."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from .. import constants
from ..durations import duration_seconds
from ..errors import RunAborted

Clock = Callable[[], float]
Dialects = tuple[tuple[str, str, str], ...]  # rate-limit header names, as Provider.ratelimit_headers declares them
BOTH_DIALECTS: Dialects = (constants.OPENAI_RATELIMIT_HEADERS, constants.ANTHROPIC_RATELIMIT_HEADERS)


class Shared(Protocol):
    """A budget this process shares with others (llmframe.ray's budget actor): a Limiter draws from it too."""

    async def take(self, tokens: float) -> None:
        """Wait until the shared budget allows one request of about `tokens` tokens."""

    def settle(self, tokens: float) -> None:
        """Give back (or, negative, take) tokens a reservation over- or under-estimated."""

    def pause(self, seconds: float) -> None:
        """Hold every process sharing the budget back for seconds from now."""

    def adopt(self, kind: str, per_minute: float) -> None:
        """Lower the shared rate of "requests" or "tokens" to a limit the server reported."""


class Bucket:
    """A continuous-refill token bucket that hands out reservations (the wait before one may proceed)."""

    def __init__(self, per_minute: float, clock: Clock):
        self._clock = clock
        self.per_minute = per_minute
        self._level = self.capacity
        self._stamp = clock()

    @property
    def capacity(self) -> float:
        # A small burst: a couple of seconds' worth, never less than one request's worth.
        return max(1.0, self.per_minute / 60 * constants.RATE_BURST_SECONDS)

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.per_minute / 60)
        self._stamp = now

    def reserve(self, amount: float) -> float:
        """Take amount now (the level may go negative) and return seconds to wait before using it."""
        self._refill()
        self._level -= amount
        return 0.0 if self._level >= 0 else -self._level * 60 / self.per_minute

    def give_back(self, amount: float) -> None:
        """Return (or, negative, take more of) what a reservation over- or under-estimated."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)

    def set_rate(self, per_minute: float) -> None:
        """Change the refill rate, keeping what is in the bucket."""
        self._refill()
        self.per_minute = per_minute
        self._level = min(self._level, self.capacity)


class Limiter:
    """The limits of one (provider, endpoint, model, key): every worker of every run on it shares them."""

    def __init__(self, clock: Clock = time.monotonic, dialects: Dialects = BOTH_DIALECTS):
        self._clock = clock
        self.dialects = dialects  # the rate-limit headers its provider's servers send (Provider.ratelimit_headers)
        self.requests: Bucket | None = None
        self.tokens: Bucket | None = None
        self._configured: dict[str, float | None] = {"requests": None, "tokens": None}
        self.paused_until = 0.0
        self.pause_reason = ""  # why, for the progress bar and for a run that will not wait that long
        self._wake_slot = 0.0  # staggered wake-ups after a pause, so the pool ramps back up
        self._spacing = 0.0
        self._runs = 0  # runs using this limiter now: a pause lasts only while one of them does
        self.shared: Shared | None = None  # a budget shared with other processes, drawn from after this one

    def configure(self, rpm: float | None, tpm: float | None) -> None:
        """Limits the user asked for; learned limits may lower them, never raise them."""
        if self._configured == {"requests": rpm, "tokens": tpm}:
            return  # keep what earlier runs learned from the server
        self._configured = {"requests": rpm, "tokens": tpm}
        self.requests = Bucket(rpm, self._clock) if rpm else None
        self.tokens = Bucket(tpm, self._clock) if tpm else None

    def enter(self) -> None:
        """A run starts using this limiter."""
        self._runs += 1

    def leave(self) -> None:
        """A run ended (finished, stopped or cancelled): the last one out lifts the pause.

        Runs at the same time share every pause; a later call learns afresh from the server, so a
        cancelled run's hour-long cool-down cannot hold back the next cell of a notebook.
        """
        self._runs = max(0, self._runs - 1)
        if self._runs == 0:
            self.paused_until = self._wake_slot = 0.0
            self.pause_reason = ""

    async def acquire(self, tokens: float, patience: Patience | None = None) -> None:
        """Wait until a request of about `tokens` tokens may be sent; patience stops a run that would wait too long."""
        while True:
            now = self._clock()
            if now < self.paused_until:
                if patience is not None:
                    patience.check(self.paused_until - now, self.pause_reason)
                # Everyone waits out the same cool-down, then wakes a little apart, not as one herd.
                self._wake_slot = max(self._wake_slot, self.paused_until) + self._spacing
                await asyncio.sleep(self._wake_slot - now)
                continue
            wait = max(
                self.requests.reserve(1) if self.requests else 0.0,
                self.tokens.reserve(tokens) if self.tokens else 0.0,
            )
            if wait > 0:
                await asyncio.sleep(wait)
            if self.shared is not None:
                await self.shared.take(tokens)
            return

    def grant(self, requests: float, tokens: float) -> tuple[float, float, float]:
        """Hand a block of permits to a process sharing this limit: (requests, tokens, seconds before use).

        A kind not asked for (0) gets none; a kind without a limit is unlimited (inf). Blocks are a
        fraction of a second's worth, so a process never holds more than a small burst.
        """
        granted, waits = [], [self.paused_until - self._clock(), 0.0]
        for bucket, need in ((self.requests, requests), (self.tokens, tokens)):
            if bucket is None or need <= 0:
                granted.append(math.inf if bucket is None else 0.0)
                continue
            block = max(need, math.floor(bucket.per_minute / 60 * constants.SHARED_BLOCK_SECONDS))
            waits.append(bucket.reserve(block))
            granted.append(block)
        return granted[0], granted[1], max(waits)

    def settle(self, estimated: float, actual: int) -> None:
        """Correct the token bucket once the real usage of a request is known."""
        if self.tokens and actual:
            self.tokens.give_back(estimated - actual)
        if self.shared is not None and actual:
            self.shared.settle(estimated - actual)

    def pause(self, seconds: float, why: str = "") -> None:
        """Hold every worker back for seconds from now (a 429's cool-down), one pause for the pool."""
        until = self._clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.pause_reason = why or f"waiting {format_seconds(seconds)} s"
        # A short pause ramps back quickly, a long one spreads the herd over up to a second or so.
        self._spacing = min(constants.RAMP_UP_SPACING_SECONDS, seconds * constants.RAMP_UP_SHARE)
        if self.shared is not None:
            self.shared.pause(seconds)

    def learn(self, headers: Mapping[str, str]) -> None:
        """Adapt to the limits and remaining budget the server reports on a response."""
        for kind in ("requests", "tokens"):
            limit, remaining, reset = server_limits(headers, kind, self.dialects)
            if limit:
                self.adopt(kind, limit * constants.LEARNED_LIMIT_MARGIN)
            if remaining is not None and remaining <= 0 and reset:
                self.pause(reset, f"the server's {kind} limit resets in {format_seconds(reset)} s")

    def adopt(self, kind: str, per_minute: float) -> None:
        """Pace "requests" or "tokens" at a limit learned from the server, unless the user asked for less."""
        configured = self._configured[kind]
        if configured is not None and configured <= per_minute:
            return
        bucket = getattr(self, kind)
        if bucket is None:
            setattr(self, kind, Bucket(per_minute, self._clock))
        elif abs(bucket.per_minute - per_minute) > 1e-9:
            bucket.set_rate(per_minute)
        else:
            return
        if self.shared is not None:
            self.shared.adopt(kind, per_minute)


class Patience:
    """How long one run waits on the server's word: max_wait for one wait, and without an answer since a refusal.

    A Retry-After or a limit reset beyond max_wait, or a storm of 429s that has left the run unanswered
    that long, stops the run with RunAborted (finished answers are cached) instead of waiting for hours.
    """

    def __init__(self, max_wait: float, clock: Clock = time.monotonic):
        self.max_wait = max_wait
        self._clock = clock
        self._refused_since: float | None = None  # the first refusal since the last answer
        self._last = ""  # the last refusal, for the message

    def answered(self) -> None:
        """The server answered a request: the run is not being refused."""
        self._refused_since = None

    def refused(self, error: str) -> None:
        """The server refused a request (429, 503, 529): the clock of waiting without an answer starts."""
        if self._refused_since is None:
            self._refused_since = self._clock()
        self._last = error

    def beyond(self, seconds: float) -> bool:
        """Whether one wait is longer than the run will wait."""
        return seconds > self.max_wait

    def check(self, seconds: float, why: str) -> None:
        """Raise RunAborted if waiting seconds more is beyond max_wait, or leaves the run unanswered longer."""
        limit = format_seconds(self.max_wait)
        if self.beyond(seconds):
            raise RunAborted(f"{why}, beyond max_wait={limit} s, so the run stopped. Finished answers are cached: "
                             "re-run later, or raise max_wait")
        if self._refused_since is not None and self._clock() + seconds - self._refused_since > self.max_wait:
            since = format_seconds(self._clock() - self._refused_since)
            raise RunAborted(
                f"no request has been answered for {since} s: the server refused every one (last: {self._last}), so "
                f"the run stopped at max_wait={limit} s. Finished answers are cached. Lower rpm= or max_concurrency=, "
                "check the account's rate limits and quota, or raise max_wait"
            )


def format_seconds(seconds: float) -> str:
    """A wait as a message shows it: whole seconds from ten up, two digits below."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2g}"


_limiters: dict[tuple, Limiter] = {}


def limiter_for(identity: tuple, dialects: Dialects = BOTH_DIALECTS) -> Limiter:
    """The process-wide limiter of one budget (provider, endpoint, model, key): concurrent runs share it."""
    *where, api_key = identity
    # Keyed by a digest: the key itself stays with the provider client.
    fingerprint = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
    return _limiters.setdefault((*where, fingerprint), Limiter(dialects=dialects))


def parse_duration(text: str) -> float | None:
    """Seconds in a reset header: OpenAI's "1s", "6m0s", "20ms", a bare number, or an RFC 3339 moment."""
    seconds = duration_seconds(text)
    if seconds is not None:
        return max(0.0, seconds)
    try:  # Anthropic: the moment the limit resets, e.g. 2026-11-21T22:30:05Z
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return max(0.0, moment.timestamp() - time.time())
    except ValueError:
        return None


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is None or math.isfinite(number) else None  # "inf", "nan": no advice at all


def server_limits(headers: Mapping[str, str], kind: str,
                  dialects: Dialects = BOTH_DIALECTS) -> tuple[float | None, float | None, float | None]:
    """(limit per minute, remaining, seconds to reset) for "requests" or "tokens", from the first dialect sent."""
    for names in dialects:
        limit_h, remaining_h, reset_h = (name.format(kind=kind) for name in names)
        if limit_h in headers or remaining_h in headers:
            reset = headers.get(reset_h)
            return _number(headers.get(limit_h)), _number(headers.get(remaining_h)), parse_duration(reset) if reset else None
    return None, None, None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, else retry-after (seconds or an HTTP date)."""
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def estimate_tokens(messages_chars: int, max_tokens: int | None) -> float:
    """Tokens a request will count against TPM before it is sent: prompt length / 4 + the output allowance."""
    return math.ceil(messages_chars / constants.CHARS_PER_TOKEN) + (max_tokens or constants.OUTPUT_TOKENS_GUESS)
