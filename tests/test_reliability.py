"""Retries, cool-downs, the circuit breaker and per-row notes, against the simulator over real HTTP."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from llmframe.errors import RunAborted
from llmframe.testing import SimulatedError, digest_answer


def rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": [f"row {i}" for i in range(n)]})


def fail_first(status: int, headers: dict | None = None, times: int = 1):
    """An answer function failing each prompt's first `times` attempts with status."""
    seen: dict[str, int] = {}

    def answer(body):
        prompt = body["messages"][-1]["content"]
        seen[prompt] = seen.get(prompt, 0) + 1
        if seen[prompt] <= times:
            raise SimulatedError(status, "try again", headers=headers)
        return digest_answer(prompt)

    return answer


def attempts_per_prompt(sim) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for logged in sim.requests:
        grouped.setdefault(logged.body["messages"][-1]["content"], []).append(logged.time)
    return grouped


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_429_is_retried_no_sooner_than_retry_after(gen, sim, transport):
    sim.answer = fail_first(429, {"retry-after-ms": "300"})
    df = rows(20)
    out = gen(df, "{x}", provider_options={"transport": transport})
    assert out["response"].tolist() == [digest_answer(x) for x in df["x"]]
    report = out.attrs["llmframe"]
    assert (report["attempts"], report["retries"], report["rate_limited"]) == (40, 20, 20)
    for prompt, times in attempts_per_prompt(sim).items():
        assert len(times) == 2, prompt
        assert times[1] - times[0] >= 0.3, f"{prompt} was retried {times[1] - times[0]:.3f} s after its 429"


def test_server_errors_are_retried_with_backoff(gen, sim):
    sim.answer = fail_first(500, times=2)
    out = gen(rows(10), "{x}")
    assert out["response_error"].isna().all()
    assert out.attrs["llmframe"]["attempts"] == 30 and out.attrs["llmframe"]["retries"] == 20


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_are_never_retried(gen, sim, status):
    sim.answer = fail_first(status, times=99)
    out = gen(rows(5), "{x}")
    assert sim.count == 5 and out["response"].isna().all()
    assert out["response_error"].str.startswith(f"HTTP {status}").all()


def test_a_request_gives_up_after_max_attempts(gen, sim):
    sim.answer = fail_first(503, {"retry-after-ms": "10"}, times=99)
    out = gen(rows(3), "{x}", max_attempts=3)
    assert sim.count == 9
    assert out["response_error"].str.endswith("(after 3 attempts)").all()


def test_bad_key_stops_the_run_at_once(gen, sim):
    sim.answer = fail_first(401, times=99)
    with pytest.raises(RunAborted, match="refused the API key"):
        gen(rows(500), "{x}", max_concurrency=4)
    assert sim.count <= 4 + 8, "a 401 must not burn through the frame"


def test_circuit_breaker_stops_early_and_keeps_finished_answers(gen, sim):
    df = pd.DataFrame({"x": [f"good {i}" for i in range(30)] + [f"bad {i}" for i in range(300)]})
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(500, "down")) if "bad" in str(body) else "ok"
    with pytest.raises(RunAborted, match="last 10 requests all failed"):
        gen(df, "{x}", max_concurrency=1, max_attempts=1, max_failures_in_a_row=10)
    assert sim.count == 40, "the breaker trips after 10 failures in a row"
    sim.answer = lambda body: "ok"
    out = gen(df, "{x}", max_concurrency=8)
    assert out.attrs["llmframe"]["cached"] == 30 and out.attrs["llmframe"]["requests_sent"] == 300


def test_timeouts_are_per_request_and_retried(gen, sim):
    sim.latency = 2.0
    out = gen(rows(2), "{x}", timeout=0.2, max_attempts=2)
    assert sim.count == 4
    assert out["response_error"].str.contains("timed out").all()
    assert out["response_error"].str.endswith("(after 2 attempts)").all()


def test_truncated_and_empty_answers_are_flagged_not_silent(gen, sim):
    sim.answer = lambda body: "" if "empty" in str(body) else "a long answer " * 20
    df = pd.DataFrame({"x": ["long one", "empty one"]})
    out = gen(df, "{x}", max_tokens=5)
    assert out["response"].iloc[0] == ("a long answer " * 20)[:20], "the truncated text is kept"
    assert out["response_error"].iloc[0] == "incomplete answer: finish_reason='length' (max_tokens reached)"
    assert out["response"].iloc[1] == "" and out["response_error"].iloc[1] == "empty answer"
    report = out.attrs["llmframe"]
    assert report["failed"] == 0 and report["finish_reasons"] == {"length": 1, "stop": 1}


def test_prompts_beyond_the_context_limit_are_refused_per_row(gen, sim):
    df = pd.DataFrame({"x": ["short", "long " * 1000, "short too"]})
    out = gen(df, "{x}", max_prompt_tokens=100)
    assert sim.count == 2
    assert out["response"].isna().tolist() == [False, True, False]
    assert out["response_error"].iloc[1].startswith("skipped: prompt too long: about 1250 tokens")


def test_client_side_rpm_paces_requests(gen, sim):
    import time

    start = time.monotonic()  # the simulator runs in this process: its arrival times share this clock
    gen(rows(20), "{x}", rpm=600)  # a burst of 10 (one second's worth), then 10 per second
    last = max(logged.time for logged in sim.requests)
    assert last - start >= 0.99, f"the 20th request at 600 rpm arrived {last - start:.2f} s after the start"


def test_retry_failed_resends_only_the_failed_rows(gen, sim):
    broken = {"row 3", "row 7"}
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(400, "no")) if any(
        b == body["messages"][-1]["content"] for b in broken) else "ok"
    df = rows(10)
    out = gen(df, "{x}", output="y")
    assert out["y"].isna().sum() == 2 and sim.count == 10
    sim.answer = lambda body: "fixed"
    again = out.llm.retry_failed()
    assert sim.count == 12, "only the two failed rows are sent again"
    assert list(again.columns) == ["x", "y", "y_error"] and again["y_error"].isna().all()
    assert again["y"].tolist() == ["ok"] * 3 + ["fixed"] + ["ok"] * 3 + ["fixed"] + ["ok"] * 2
    with pytest.raises(Exception, match="not made by df.llm.generate"):
        df.llm.retry_failed()


@pytest.mark.slow
def test_chaos_every_row_answered_with_few_wasted_attempts(gen, sim):
    """20% injected 429s, 5% 500s and a server rpm limit the client is not told about."""
    from llmframe.testing import Faults

    retry_after = 0.02
    sim.faults = Faults(rpm=30_000, burst_seconds=1, error_rates={429: 0.20, 500: 0.05}, retry_after=retry_after,
                        seed=7)
    df = pd.DataFrame({"x": [f"row {i}" for i in range(2000)]}, index=[f"r{i}" for i in range(2000)][::-1])
    out = gen(df, "{x}", max_concurrency=50, max_attempts=12)
    assert out["response"].tolist() == [digest_answer(x) for x in df["x"]], "every row answered, aligned"
    assert out["response_error"].isna().all()
    stats = sim.stats()
    # Each attempt fails with p = 0.25, so the expected minimum is rows / 0.75; rpm 429s come on top.
    minimum = 2000 / 0.75
    assert stats["count"] <= minimum * 1.1 + stats["faults"].get("rpm", 0)
    assert stats["faults"].get("rpm", 0) <= 0.02 * stats["count"], stats
    report = out.attrs["llmframe"]
    assert report["attempts"] == stats["count"] and report["retries"] == stats["count"] - 2000
    # Nobody retried earlier than the server asked.
    for attempts in sim.attempts_by_prompt().values():
        for previous, following in zip(attempts, attempts[1:]):
            if previous.status == 429:
                assert following.time - previous.time >= retry_after, (previous, following)


SERVER_FAULTS = [
    ("malformed_rate", "malformed response"),
    ("empty_choices_rate", "no choices"),
    ("html_rate", "HTTP 502"),
    ("reset_rate", "connection error"),
    ("hang_rate", "timed out"),
    ("drip_rate", "timed out"),  # every read is quick; the attempt as a whole is not
]


@pytest.mark.parametrize("transport", ["http", "sdk"])
@pytest.mark.parametrize("fault, message", SERVER_FAULTS, ids=[f for f, _ in SERVER_FAULTS])
def test_a_broken_server_gives_per_row_errors_after_retries(gen, sim, fault, message, transport):
    from llmframe.testing import Faults

    sim.faults = Faults(**{fault: 1.0})
    out = gen(rows(3), "{x}", max_attempts=2, timeout=0.5, provider_options={"transport": transport})
    assert out["response"].isna().all()
    assert out["response_error"].str.contains(message).all(), out["response_error"].tolist()
    assert out["response_error"].str.endswith("(after 2 attempts)").all()
    assert sim.count == 6


def test_unicode_rtl_emoji_and_nul_bytes_round_trip(gen, sim):
    texts = ["héllo", "👋🏽 emoji", "مرحبا بالعالم", "nul\x00inside", "tab\tand\nnewline", "a\u202eb"]
    out = gen(pd.DataFrame({"x": texts}), "{x}")
    assert out["response"].tolist() == [digest_answer(t) for t in texts]
    assert [r.body["messages"][-1]["content"] for r in sim.requests] == texts


def test_a_row_that_cannot_be_encoded_is_skipped_alone(gen, sim):
    df = pd.DataFrame({"x": ["fine", "lone \ud800 surrogate", "also fine"]}, dtype=object)
    out = gen(df, "{x}")
    assert sim.count == 2
    assert out["response"].isna().tolist() == [False, True, False]
    assert out["response_error"].iloc[1].startswith("skipped: the prompt is not valid Unicode")


def test_unknown_transport_is_refused(gen, sim):
    from llmframe.errors import ConfigError

    with pytest.raises(ConfigError, match="transport"):
        gen(rows(1), "{x}", provider_options={"transport": "pigeon"})
    assert sim.count == 0


def test_non_finite_retry_after_is_ignored(gen, sim):
    sim.answer = fail_first(429, {"retry-after-ms": "inf", "retry-after": "inf"})
    out = gen(rows(3), "{x}")
    assert out["response_error"].isna().all(), "backoff instead of a wait forever"
    assert sim.count == 6


def answer_then_refuse(status: int, headers: dict):
    """An answer function answering the "good" prompts and refusing the "bad" ones."""
    return lambda body: (_ for _ in ()).throw(SimulatedError(status, "slow down", headers=headers)) if "bad" in str(
        body["messages"]) else digest_answer(body["messages"][-1]["content"])


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_a_pool_wait_beyond_max_wait_stops_the_run_and_keeps_answers(gen, sim, transport):
    df = pd.DataFrame({"x": [f"good {i}" for i in range(5)] + [f"bad {i}" for i in range(50)]})
    sim.answer = answer_then_refuse(429, {"retry-after": "3600"})
    with pytest.raises(RunAborted, match=r"the server asked to wait 3600 s \(HTTP 429: slow down\), beyond "
                                         r"max_wait=60 s, so the run stopped"):
        gen(df, "{x}", max_concurrency=1, max_wait=60, provider_options={"transport": transport})
    assert sim.count == 6, "one 429, not retried"
    sim.answer = lambda body: "later"
    out = gen(df, "{x}", max_concurrency=8)
    assert out.attrs["llmframe"]["cached"] == 5


def test_a_row_wait_beyond_max_wait_fails_that_row_alone(gen, sim):
    df = pd.DataFrame({"x": ["good 0", "bad 0", "good 1"]})
    sim.answer = answer_then_refuse(500, {"retry-after": "3600"})
    out = gen(df, "{x}", max_wait=60)
    assert out["response"].isna().tolist() == [False, True, False]
    assert out["response_error"].iloc[1] == ("HTTP 500: slow down (the server asked to wait 3600 s, "
                                             "beyond max_wait=60 s)")
    assert sim.count == 3


def test_a_limit_reset_beyond_max_wait_stops_the_run(gen, sim):
    from llmframe.testing import Faults

    sim.faults = Faults(rpm=1)  # after one request the budget is spent until it refills, a minute later
    with pytest.raises(RunAborted, match=r"the server's requests limit resets in \d+ s, beyond max_wait=5 s"):
        gen(rows(3), "{x}", max_concurrency=1, max_wait=5)
    assert sim.count == 1


def test_a_429_storm_stops_once_nothing_is_answered_for_max_wait(gen, sim):
    from llmframe.testing import Faults

    sim.faults = Faults(error_rates={429: 1.0}, retry_after=0.05)
    # Without the bound, only the breaker stops it: 25 rows failing 20 attempts each, 500 requests.
    with pytest.raises(RunAborted, match=r"no request has been answered for .* s: the server refused every one "
                                         r"\(last: HTTP 429: injected 429 error\).*Lower rpm= or max_concurrency="):
        gen(rows(200), "{x}", max_concurrency=8, max_attempts=20, max_wait=1)
    assert sim.count < 25 * 20


def test_an_answer_resets_the_storm_clock(gen, sim):
    from llmframe.testing import Faults

    # Half the requests refused: the run is slowed, not refused. It takes seconds, several times max_wait,
    # so a clock that answers did not restart would stop it.
    sim.faults = Faults(error_rates={429: 0.5}, retry_after=0.05, seed=3)
    out = gen(rows(200), "{x}", max_concurrency=4, max_attempts=30, max_wait=2)
    assert out["response_error"].isna().all()
    assert out.attrs["llmframe"]["rate_limited"] > 100


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_a_spent_quota_stops_the_run_at_once_with_the_providers_message(gen, sim, transport):
    from llmframe.testing import Faults

    sim.faults = Faults(quota_rate=1.0)
    with pytest.raises(RunAborted, match="quota or credit is spent .*You exceeded your current quota"):
        gen(rows(200), "{x}", max_concurrency=4, provider_options={"transport": transport})
    assert sim.count <= 4 + 8, "a spent quota is not retried like a rate limit"


def test_an_interrupted_runs_pause_does_not_hold_back_the_next_call(gen, sim):
    import time

    from llmframe import ratelimit

    from .conftest import ctrl_c_when

    def paused() -> bool:
        return any(limiter.paused_until > time.monotonic() for limiter in ratelimit._limiters.values())

    sim.answer = fail_first(429, {"retry-after": "100"})  # within max_wait: the run waits, until Ctrl-C
    ctrl_c_when(paused)
    with pytest.raises(KeyboardInterrupt):
        gen(rows(20), "a {x}")
    deadline = time.monotonic() + 30  # the cancelled run winds down on the executor's loop
    while paused() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not paused(), "the cancelled run's pause outlived it"
    sim.answer = lambda body: "fresh"
    out = gen(rows(5), "b {x}")
    assert out["response"].tolist() == ["fresh"] * 5


def test_the_progress_bar_says_when_the_pool_is_paused(gen, sim, capsys):
    sim.answer = fail_first(429, {"retry-after": "3"})
    out = gen(rows(1), "{x}", progress=True)
    assert out["response_error"].isna().all()
    drawn = capsys.readouterr().err
    assert re.search(r"paused until \d\d:\d\d:\d\d \(the server asked to wait 3 s\)", drawn), drawn


def test_a_shared_bar_shows_a_pause_until_the_run_that_made_it_clears_it():
    from llmframe.progress import Progress, _Part

    bar = Progress(10, show=False)
    paused, other = _Part(bar), _Part(bar)
    paused.show_pause(30, "the server asked to wait 30 s")
    other.show_pause(0, "")  # a run on another limiter is not paused: it must not hide this one's pause
    assert re.search(r"paused until \d\d:\d\d:\d\d \(the server asked to wait 30 s\)$", bar.summary()), bar.summary()
    paused.show_pause(0.5, "the server asked to wait 30 s")  # nearly over: not worth a flicker
    assert "paused" not in bar.summary()
