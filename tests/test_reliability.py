"""Retries, cool-downs, the circuit breaker and per-row notes, against the simulator over real HTTP."""

from __future__ import annotations

import warnings
from pathlib import Path
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
    sim.latency = 30.0  # far beyond the timeout: a loaded machine's pauses cannot let an answer in first
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
    # An empty answer that says it is complete is a failure: asked once more in the run, never cached.
    assert pd.isna(out["response"].iloc[1]) and out["response_error"].iloc[1] == "empty answer (after 2 attempts)"
    report = out.attrs["llmframe"]
    assert report["failed"] == 1 and report["finish_reasons"] == {"length": 1}
    assert sim.count == 3 and report["attempts"] == 3 and report["retries"] == 1
    assert report["output_tokens"] == sum(r.billed[1] for r in sim.requests), "the empty answers were billed"


def test_an_empty_answer_is_not_cached_and_is_sent_again(gen, sim):
    sim.answer = lambda body: ""
    df = rows(3)
    out = gen(df, "{x}")
    assert out["response"].isna().all() and sim.count == 6
    sim.reset()
    sim.answer = lambda body: ""
    again = gen(df, "{x}")
    assert sim.count == 6, "a re-run sends the empty answers again: they were not cached"
    sim.answer = lambda body: "now an answer"
    fixed = again.llm.retry_failed()
    assert fixed["response"].tolist() == ["now an answer"] * 3 and fixed["response_error"].isna().all()
    assert sim.count == 9


def test_an_empty_answer_asked_again_in_the_run_can_succeed(gen, sim):
    seen: set[str] = set()

    def answer(body):
        prompt = body["messages"][-1]["content"]
        first = prompt not in seen
        seen.add(prompt)
        return "" if first else digest_answer(prompt)

    sim.answer = answer
    df = rows(4)
    out = gen(df, "{x}", usage=True, prices={"openai:sim-model": {"input_mtok": 1e6, "output_mtok": 1e6}})
    assert out["response"].tolist() == [digest_answer(x) for x in df["x"]] and out["response_error"].isna().all()
    assert sim.count == 8
    billed = sum(r.billed[0] for r in sim.requests)
    assert out["response_input_tokens"].sum() == billed == out.attrs["llmframe"]["input_tokens"]


def test_an_old_cached_empty_answer_is_asked_again(gen, sim, cache_dir):
    """Caches written before empty answers were failures hold some: a re-run asks for them again."""
    from llmframe.stores.diskcache import open_store
    from llmframe.plan.request import Response

    df = rows(3)
    gen(df, "{x}")
    store = open_store(str(cache_dir))
    keys = [key for key, _ in store._entries()]
    empty = Response("", 5, 0, "stop").to_cache("openai:sim-model", 0.0)
    truncated = Response("", 5, 9, "length").to_cache("openai:sim-model", 0.0)  # incomplete, not empty: kept
    store.set_many([(keys[0], empty), (keys[1], truncated)], overwrite=True)
    sim.reset()
    out = gen(df, "{x}")
    assert sim.count == 1 and out.attrs["llmframe"]["cached"] == 2
    answers = dict(zip(df["x"], out["response"]))
    assert list(answers.values()).count("") == 1, "the truncated empty answer stays, with its note"
    assert all(answer == digest_answer(x) for x, answer in answers.items() if answer != "")
    assert (out["response_error"] == "incomplete answer: finish_reason='length' (max_tokens reached)").sum() == 1
    sim.reset()
    gen(df, "{x}")
    assert sim.count == 0, "the new answer replaced the empty one in the cache"


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
    # Only a hang or a drip (whose whole reply takes seconds) should time out, however slow the machine.
    timeout = 0.5 if fault in ("hang_rate", "drip_rate") else 30
    out = gen(rows(3), "{x}", max_attempts=2, timeout=timeout, provider_options={"transport": transport})
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


def closed_port() -> int:
    """A loopback port nothing listens on: every connection to it is refused."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# (model, the base_url of a server at http://127.0.0.1:PORT, provider_options): every transport llmframe has.
TRANSPORTS = {
    "openai-http": ("openai:m", "http://127.0.0.1:{port}/v1", {"transport": "http"}),
    "openai-sdk": ("openai:m", "http://127.0.0.1:{port}/v1", {"transport": "sdk"}),
    "anthropic": ("anthropic:m", "http://127.0.0.1:{port}", None),
    "gemini": ("gemini:m", "http://127.0.0.1:{port}", None),
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_requests_refused_a_connection_are_not_counted_as_sent(gen, transport, monkeypatch):
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    model, url, options = TRANSPORTS[transport]
    with pytest.warns(RuntimeWarning) as warned:
        out = gen(rows(4), "{x}", model=model, base_url=url.format(port=closed_port()), provider_options=options,
                  max_attempts=2)
    report = out.attrs["llmframe"]
    assert out["response"].isna().all() and out["response_error"].str.endswith("(after 2 attempts)").all()
    assert (report["requests_sent"], report["requests_failed_to_connect"], report["failed"]) == (0, 4, 4)
    assert report["attempts"] == 8 and report["input_tokens"] == report["output_tokens"] == 0
    assert "could not connect" in report.headline()
    ours = [w for w in warned if w.category is RuntimeWarning]
    assert len(ours) == 1, [str(w.message) for w in ours]
    message = str(ours[0].message)
    assert "4 of 4 rows failed (first error: connection error" in message, message
    assert "4 requests never reached the server" in message
    assert Path(ours[0].filename).parent.name == "tests", "the warning points at the caller's line, not llmframe's"


def test_most_rows_failing_warns_once_and_half_does_not(gen, sim):
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(400, "no")) if "bad" in str(body) else "ok"
    half = pd.DataFrame({"x": ["bad 1", "good 1", "bad 2", "good 2"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gen(half, "{x}")  # two of four: the error column says it, no warning
        with pytest.raises(RunAborted, match="3 of 4 rows failed"):  # errors="raise" raises instead of warning
            gen(pd.DataFrame({"x": ["bad 1", "bad 2", "bad 3", "good 1"]}), "{x}", errors="raise")
    most = pd.DataFrame({"x": ["bad 1", "bad 2", "bad 3", "good 1", None]})  # a skipped row is not counted
    with pytest.warns(RuntimeWarning, match=r"^3 of 4 rows failed \(first error: HTTP 400: no\)\. ") as warned:
        out = gen(most, "{x}")
    assert len(warned) == 1 and out.attrs["llmframe"]["requests_failed_to_connect"] == 0
    assert "never reached" not in str(warned[0].message)


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_a_connection_the_server_drops_still_counts_as_sent(gen, sim, transport):
    """A reply cut short reached the server (which may bill it): sent, though its error says "connection"."""
    from llmframe.testing import Faults

    sim.faults = Faults(reset_rate=1.0)
    with pytest.warns(RuntimeWarning, match="3 of 3 rows failed"):
        out = gen(rows(3), "{x}", max_attempts=2, provider_options={"transport": transport})
    report = out.attrs["llmframe"]
    assert out["response_error"].str.contains("connection error").all()
    assert (report["requests_sent"], report["requests_failed_to_connect"], sim.count) == (3, 0, 6)


MISTYPED = [
    ({"choices.0.message.content": 7}, "message.content"),
    ({"choices.0.message.content": {"text": "a dict"}}, "message.content"),
    ({"choices.0.message.content": [{"type": "text", "text": 7}]}, "message.content"),
    ({"choices.0.finish_reason": 3}, "finish_reason"),
    ({"usage.completion_tokens": "12"}, "usage.completion_tokens"),
    ({"usage.prompt_tokens": 2**40}, "usage.prompt_tokens"),
    ({"usage": [1, 2]}, "usage"),
    ({"choices": ["str"]}, "choices"),
    ({"choices.0.message": "hello"}, "message"),
]


@pytest.mark.parametrize("transport", ["http", "sdk"])
@pytest.mark.parametrize("retyped, field", MISTYPED, ids=[f"{next(iter(r))}={next(iter(r.values()))!r}"[:40]
                                                           for r, _ in MISTYPED])
def test_a_reply_with_a_field_of_the_wrong_type_is_a_retried_row_error(gen, sim, retyped, field, transport):
    """Well-formed JSON with a mistyped field is a malformed reply: retried, then the row's error, never a crash."""
    from llmframe.testing import Faults

    sim.faults = Faults(retyped_rate=1.0, retyped=retyped)
    df = rows(3)
    out = gen(df, "{x}", max_attempts=2, provider_options={"transport": transport})
    assert out["response"].isna().all() and sim.count == 6
    errors = out["response_error"]
    assert errors.str.startswith("malformed response").all() and errors.str.contains(field, regex=False).all(), \
        errors.tolist()
    assert errors.str.endswith("(after 2 attempts)").all()
    sim.faults = Faults()
    again = gen(df, "{x}", provider_options={"transport": transport})
    assert again["response"].tolist() == [digest_answer(x) for x in df["x"]], "nothing broken was cached"


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_content_parts_are_joined_where_they_are_text(gen, sim, transport):
    """Some gateways send message.content as a list of parts, as the request's own content may be."""
    from llmframe.testing import Faults

    def parts(text):
        return [{"type": "text", "text": text[:7]}, {"type": "image_url", "image_url": {"url": "x"}},
                {"type": "output_text", "text": text[7:]}]

    sim.faults = Faults(retyped_rate=1.0, retyped={"choices.0.message.content": parts})
    df = rows(3)
    out = gen(df, "{x}", provider_options={"transport": transport})
    assert out["response"].tolist() == [digest_answer(x) for x in df["x"]] and out["response_error"].isna().all()


def test_a_reply_with_a_lone_surrogate_is_kept_repaired(gen, sim):
    """JSON may escape half a surrogate pair (an emoji cut by max_tokens): the text keeps a replacement mark."""
    from llmframe.testing import Faults

    sim.faults = Faults(retyped_rate=1.0, retyped={"choices.0.message.content": "cut \ud83d", "choices.0.finish_reason":
                                                   "length\udc00"})
    out = gen(rows(2), "{x}")
    assert out["response"].tolist() == ["cut \ufffd"] * 2
    assert out.attrs["llmframe"]["finish_reasons"] == {"length\ufffd": 2}
    sim.reset()
    assert gen(rows(2), "{x}")["response"].tolist() == ["cut \ufffd"] * 2 and sim.count == 0, "cached as repaired"


def always_fail(status: int, message: str):
    """An answer function that fails every request with status and message."""

    def answer(body):
        raise SimulatedError(status, message)

    return answer


BLAMING_THE_REQUEST = [
    "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or 'json_object'",
    "litellm.BadRequestError: OpenAIException - Unrecognized request argument supplied: reasoning",
    "Unsupported parameter: 'seed' is not supported with this model.",
]


@pytest.mark.parametrize("transport", ["http", "sdk"])
@pytest.mark.parametrize("message", BLAMING_THE_REQUEST, ids=["pydantic", "litellm", "unsupported"])
def test_a_5xx_that_blames_the_request_is_not_retried(gen, sim, message, transport):
    sim.answer = always_fail(500, message)
    out = gen(rows(3), "{x}", provider_options={"transport": transport})
    assert sim.count == 3 and out.attrs["llmframe"]["retries"] == 0
    assert out["response_error"].str.startswith("HTTP 500").all()


@pytest.mark.parametrize("message", ["upstream connect error or disconnect/reset before headers",
                                     "invalid response from the upstream server", "Internal Server Error"])
def test_a_5xx_that_blames_the_server_is_retried(gen, sim, message):
    sim.answer = always_fail(500, message)
    out = gen(rows(2), "{x}", max_attempts=2)
    assert sim.count == 4 and out["response_error"].str.endswith("(after 2 attempts)").all()


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

    from llmframe.engine import ratelimit

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
    from llmframe.engine.progress import Progress, _Part

    bar = Progress(10, show=False)
    paused, other = _Part(bar), _Part(bar)
    paused.show_pause(30, "the server asked to wait 30 s")
    other.show_pause(0, "")  # a run on another limiter is not paused: it must not hide this one's pause
    assert re.search(r"paused until \d\d:\d\d:\d\d \(the server asked to wait 30 s\)$", bar.summary()), bar.summary()
    paused.show_pause(0.5, "the server asked to wait 30 s")  # nearly over: not worth a flicker
    assert "paused" not in bar.summary()
