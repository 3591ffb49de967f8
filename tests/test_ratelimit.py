"""Rate limiting as pure logic, on an injected clock: buckets, learned limits, pauses, header parsing."""

from __future__ import annotations

import asyncio

import pytest

from llmframe import constants
from llmframe.errors import RunAborted, quota_spent
from llmframe.engine.ratelimit import (
    Bucket,
    Limiter,
    Patience,
    estimate_tokens,
    parse_duration,
    retry_after,
    server_limits,
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_bucket_allows_a_small_burst_then_paces_at_the_rate():
    clock = Clock()
    bucket = Bucket(600, clock)  # 10 per second, burst of one second's worth
    waits = [bucket.reserve(1) for _ in range(12)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(0.1) and waits[11] == pytest.approx(0.2)
    clock.now += 0.2  # the two reservations in debt are now paid for
    assert bucket.reserve(1) == pytest.approx(0.1)


def test_bucket_refills_continuously_up_to_its_capacity():
    clock = Clock()
    bucket = Bucket(60, clock)  # 1 per second, capacity 1
    assert bucket.reserve(1) == 0.0
    clock.now += 100
    assert bucket.reserve(1) == 0.0
    assert bucket.reserve(1) == pytest.approx(1.0), "idle time must not bank more than the burst"


def test_token_estimates_are_corrected_by_real_usage():
    clock = Clock()
    limiter = Limiter(clock)
    limiter.configure(rpm=None, tpm=6000)  # 100 tokens per second, capacity 100
    asyncio.run(limiter.acquire(100))
    assert limiter.tokens.reserve(0) == 0.0
    limiter.settle(estimated=100, actual=40)  # 60 tokens were reserved but not used
    assert limiter.tokens.reserve(60) == 0.0
    assert limiter.tokens.reserve(10) == pytest.approx(0.1)


def test_learned_limits_lower_but_never_raise_the_configured_ones():
    limiter = Limiter(Clock())
    limiter.configure(rpm=100, tpm=None)
    limiter.learn({"x-ratelimit-limit-requests": "1000", "x-ratelimit-remaining-requests": "999"})
    assert limiter.requests.per_minute == 100
    limiter.learn({"x-ratelimit-limit-requests": "50"})
    assert limiter.requests.per_minute == pytest.approx(50 * constants.LEARNED_LIMIT_MARGIN)
    fresh = Limiter(Clock())
    fresh.configure(None, None)
    fresh.learn({"x-ratelimit-limit-tokens": "90000", "x-ratelimit-remaining-tokens": "89000"})
    assert fresh.requests is None and fresh.tokens.per_minute == pytest.approx(90000 * constants.LEARNED_LIMIT_MARGIN)


def test_exhausted_budget_pauses_until_the_reset():
    clock = Clock()
    limiter = Limiter(clock)
    limiter.learn({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                   "x-ratelimit-reset-requests": "2.5s"})
    assert limiter.paused_until == pytest.approx(clock.now + 2.5)


def test_a_pause_holds_every_worker_and_releases_them_staggered():
    limiter = Limiter()
    woke: list[float] = []

    async def worker(loop):
        await limiter.acquire(1)
        woke.append(loop.time())

    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        limiter.pause(1.0)
        await asyncio.gather(*(worker(loop) for _ in range(5)))
        return start

    start = asyncio.run(main())
    assert min(woke) - start >= 1.0, "nobody may go before the cool-down ends"
    # Each worker has its own slot after the cool-down and none goes before it; lower bounds, so a loaded
    # machine that wakes them late (even all at once) cannot fail this, while a herd released together would.
    spacing = constants.RAMP_UP_SPACING_SECONDS
    for k, moment in enumerate(sorted(woke), start=1):
        assert moment - start >= 1.0 + k * spacing - 1e-6, f"worker {k} resumed before its slot"


@pytest.mark.parametrize(
    "text, seconds",
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1.5s", 1.5), ("2h3m", 7380.0), ("7", 7.0), ("0.25", 0.25),
     ("soon", None)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_duration_of_an_rfc3339_moment():
    from datetime import datetime, timedelta, timezone

    moment = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    assert 28 <= parse_duration(moment) <= 30


def test_retry_after_prefers_milliseconds_and_reads_http_dates():
    assert retry_after({"retry-after-ms": "1500", "retry-after": "2"}) == 1.5
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after({"retry-after": "garbage"}) is None
    assert retry_after({}) is None


def test_server_limits_of_both_vendors():
    openai = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
              "x-ratelimit-reset-requests": "120ms"}
    assert server_limits(openai, "requests") == (500.0, 499.0, pytest.approx(0.12))
    anthropic = {"anthropic-ratelimit-tokens-limit": "80000", "anthropic-ratelimit-tokens-remaining": "0"}
    assert server_limits(anthropic, "tokens") == (80000.0, 0.0, None)
    assert server_limits({}, "requests") == (None, None, None)


def test_token_estimate_before_sending():
    assert estimate_tokens(400, 50) == 150
    assert estimate_tokens(4, None) == 1 + constants.OUTPUT_TOKENS_GUESS


def test_a_shared_limiter_grants_blocks_within_its_rate():
    clock = Clock()
    budget = Limiter(clock)
    budget.configure(rpm=6000, tpm=None)  # 100 a second, a burst of 100; blocks of a tenth of a second
    grants = [budget.grant(1, 500) for _ in range(11)]
    assert [g[0] for g in grants] == [10.0] * 11
    assert all(g[1] == float("inf") for g in grants), "no tpm: tokens are unlimited"
    assert [g[2] for g in grants[:10]] == [0.0] * 10
    assert grants[10][2] == pytest.approx(0.1), "the burst is spent: the next block waits for the refill"
    assert budget.grant(0, 500)[0] == 0.0, "a kind not asked for is not handed out"
    budget.pause(2.0)
    assert budget.grant(1, 0)[2] == pytest.approx(2.0), "a pause holds every sharer"


def test_limits_learned_from_one_endpoint_stay_with_it(sim, monkeypatch):
    # Both endpoints come from OPENAI_BASE_URL, so base_url= is None for both: the limiter must tell them apart.
    import pandas as pd

    from llmframe.engine import ratelimit
    from llmframe.providers.openai import OpenAIProvider
    from llmframe.testing.faults import Faults
    from llmframe.testing.simulator import Simulator

    def limiter_here():
        provider = OpenAIProvider("sim-model", api_key=sim.api_key, max_concurrency=1, timeout=10)
        return ratelimit.limiter_for(provider.limiter_key)

    def run(rows: int) -> pd.DataFrame:
        df = pd.DataFrame({"x": [f"row {i}" for i in range(rows)]})
        return df.llm.generate("{x}", model="openai:sim-model", api_key=sim.api_key, cache=False, progress=False)

    with Simulator(faults=Faults(rpm=6)) as limited:
        monkeypatch.setenv("OPENAI_BASE_URL", limited.base_url)
        assert run(2)["response"].notna().all()
        learned = limiter_here().requests
        assert learned is not None and learned.per_minute == pytest.approx(6 * constants.LEARNED_LIMIT_MARGIN)
        monkeypatch.setenv("OPENAI_BASE_URL", limited.base_url + "/")
        assert limiter_here().requests is learned, "the same endpoint, spelled with a trailing slash"
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    assert limiter_here().requests is None, "the other server's limit does not pace this one"
    assert run(4)["response"].notna().all() and sim.count == 4


def test_waits_that_are_not_finite_are_no_advice():
    assert retry_after({"retry-after-ms": "inf"}) is None
    assert retry_after({"retry-after-ms": "nan", "retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": "inf"}) is None and retry_after({"retry-after": "Infinity"}) is None
    assert parse_duration("inf") is None and parse_duration("nan") is None
    assert parse_duration("9" * 400 + "s") is None, "overflows to inf"
    headers = {"x-ratelimit-limit-requests": "inf", "x-ratelimit-remaining-requests": "0",
               "x-ratelimit-reset-requests": "inf"}
    assert server_limits(headers, "requests") == (None, 0.0, None)
    limiter = Limiter(Clock())
    limiter.learn(headers)
    assert limiter.paused_until == 0.0 and limiter.requests is None


def test_a_pause_lasts_only_while_a_run_uses_the_limiter():
    limiter = Limiter(Clock())
    limiter.enter()
    limiter.enter()  # two runs of a sweep share it
    limiter.pause(600, "the server asked to wait 600 s")
    limiter.leave()
    assert limiter.paused_until == pytest.approx(1600), "the other run still shares the pause"
    limiter.leave()
    assert limiter.paused_until == 0.0 and limiter.pause_reason == "", "no run is left for it to hold back"


def test_patience_stops_one_wait_beyond_max_wait():
    patience = Patience(10, Clock())
    patience.check(10, "the server asked to wait 10 s")
    with pytest.raises(RunAborted, match=r"^the server asked to wait 11 s, beyond max_wait=10 s, so the run stopped"):
        patience.check(11, "the server asked to wait 11 s")


def test_patience_stops_a_run_refused_without_an_answer_for_max_wait():
    clock = Clock()
    patience = Patience(10, clock)
    patience.refused("HTTP 429: slow down")
    clock.now += 6
    patience.check(4, "the server asked to wait 4 s")  # 10 s without an answer: still within
    clock.now += 4
    with pytest.raises(RunAborted, match=r"no request has been answered for 10 s: the server refused every one "
                                         r"\(last: HTTP 429: slow down\)"):
        patience.check(1, "the server asked to wait 1 s")
    patience.answered()
    clock.now += 100
    patience.check(9, "the server asked to wait 9 s")  # an answer restarted the clock


def test_a_limit_reset_beyond_max_wait_stops_at_once_instead_of_sleeping():
    limiter = Limiter()
    limiter.learn({"x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "0",
                   "x-ratelimit-reset-requests": "99999s"})  # about 28 hours

    async def main():
        await asyncio.wait_for(limiter.acquire(1, Patience(60)), timeout=30)

    with pytest.raises(RunAborted, match="the server's requests limit resets in 99999 s, beyond max_wait=60 s"):
        asyncio.run(main())


@pytest.mark.parametrize("status, body, spent", [
    (429, b'{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", '
          b'"code": "insufficient_quota"}}', True),  # OpenAI, raw
    (429, {"message": "You exceeded your current quota", "type": "insufficient_quota"}, True),  # openai SDK's body
    (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "You have reached your API usage limits",
                                      "details": {"error_code": "enforced_spend_limit_reached"}}}, True),  # Anthropic
    (402, {"type": "error", "error": {"type": "billing_error", "message": "credit balance too low"}}, True),
    (429, b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}', False),
    (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "x"}]}}, False),  # Gemini
    (429, b"<html>Too Many Requests</html>", False),
])
def test_a_spent_quota_is_told_apart_from_a_rate_limit(status, body, spent):
    assert quota_spent(status, body) is spent
