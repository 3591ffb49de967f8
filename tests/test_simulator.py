"""Tests of llmframe.testing: the simulator over real HTTP, through the real openai SDK."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import typing
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pydantic
import pytest
from openai.lib._pydantic import to_strict_json_schema  # what client.chat.completions.parse sends
from pydantic import BaseModel, Field

from llmframe.testing import Faults, SimulatedError, Simulator, SimulatorProcess, default_answer, digest_answer
from llmframe.testing.__main__ import _parse
from llmframe.testing.faults import duration
from llmframe.testing.schema_answers import instance, invalid_json, violation

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]


def client(sim, **kwargs) -> openai.OpenAI:
    """An SDK client for a simulator, without retries so errors surface at once."""
    return openai.OpenAI(**{"base_url": sim.base_url, "api_key": sim.api_key, "max_retries": 0, **kwargs})


def ask(sim, prompt: str, **kwargs):
    """Send one user prompt and return the ChatCompletion."""
    return client(sim).chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": prompt}], **kwargs
    )


def wait_until(condition, timeout: float = 30.0) -> None:
    """Poll a condition until it holds, failing after a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def raw(sim, path: str, data: bytes | None = None, headers: dict | None = None):
    """Send a raw HTTP request; return (status, parsed JSON body)."""
    root = sim.base_url.removesuffix("/v1")
    req = urllib.request.Request(root + path, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_answer_is_digest_of_prompt(llm_simulator):
    reply = ask(llm_simulator, "hello")
    assert reply.choices[0].message.content == digest_answer("hello")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "sim-model"
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-sim-")
    assert reply.usage.prompt_tokens == 1  # "hello" is 5 characters
    assert reply.usage.completion_tokens == len(digest_answer("hello")) // 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_default_answer_uses_last_user_message_and_content_parts():
    parts = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "b"},
    ]
    body = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": parts},
            {"role": "assistant", "content": None},
        ]
    }
    assert default_answer(body) == digest_answer("ab")
    assert digest_answer("x") == "answer-" + "2d711642b726b044"


def test_count_and_log(llm_simulator):
    started = time.monotonic()
    prompts = [f"row {i}" for i in range(3)]
    answers = [ask(llm_simulator, p).choices[0].message.content for p in prompts]
    assert answers == [digest_answer(p) for p in prompts]
    assert llm_simulator.count == 3
    logged = llm_simulator.requests
    assert [r.body["messages"][-1]["content"] for r in logged] == prompts
    assert all(r.path == "/v1/chat/completions" and r.time >= started for r in logged)
    assert llm_simulator.api_key not in repr(logged)  # credentials are never logged


def test_concurrent_rows_get_their_own_answers(llm_simulator):
    llm_simulator.latency = 0.05
    prompts = [f"row {i}" for i in range(20)]
    answers: dict[str, str] = {}

    def run(prompt: str) -> None:
        answers[prompt] = ask(llm_simulator, prompt).choices[0].message.content

    threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == {p: digest_answer(p) for p in prompts}
    assert llm_simulator.count == 20


def test_simulated_error_becomes_sdk_exception(llm_simulator):
    def answer(body):
        raise SimulatedError(400, "bad prompt")

    llm_simulator.answer = answer
    with pytest.raises(openai.BadRequestError) as info:
        ask(llm_simulator, "x")
    assert info.value.status_code == 400
    assert "bad prompt" in str(info.value)
    assert llm_simulator.count == 1  # failed requests are logged too


def test_simulated_rate_limit_sends_headers(llm_simulator):
    def answer(body):
        raise SimulatedError(429, "slow down", headers={"Retry-After": "7"})

    llm_simulator.answer = answer
    with pytest.raises(openai.RateLimitError) as info:
        ask(llm_simulator, "x")
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["code"] == "rate_limit_exceeded"


def test_crashing_answer_function_gives_500(llm_simulator):
    llm_simulator.answer = lambda body: 1 / 0
    with pytest.raises(openai.InternalServerError) as info:
        ask(llm_simulator, "x")
    assert "ZeroDivisionError" in str(info.value)


def test_missing_or_empty_key_is_401(llm_simulator):
    data = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
    for headers in ({}, {"Authorization": "Bearer "}):
        status, body = raw(llm_simulator, "/v1/chat/completions", data, {"Content-Type": "application/json", **headers})
        assert status == 401
        assert set(body["error"]) == {"message", "type", "code"}
    assert llm_simulator.count == 0


def test_invalid_json_is_400(llm_simulator):
    status, body = raw(llm_simulator, "/v1/chat/completions", b"{not json", {"Authorization": "Bearer k"})
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"


def test_max_tokens_truncates(llm_simulator):
    reply = ask(llm_simulator, "hello", max_tokens=2)
    assert reply.choices[0].message.content == digest_answer("hello")[:8]
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 2
    reply = ask(llm_simulator, "hello", max_completion_tokens=1)
    assert reply.choices[0].message.content == digest_answer("hello")[:4]


def test_latency_is_applied_after_logging(llm_simulator):
    llm_simulator.latency = 0.3
    started = time.monotonic()
    ask(llm_simulator, "slow")
    finished = time.monotonic()
    assert finished - started >= 0.3
    # The request was logged on arrival, a full latency before its reply came back.
    assert finished - llm_simulator.requests[0].time >= 0.3


def test_reset_restores_defaults(llm_simulator):
    llm_simulator.latency = 5.0
    llm_simulator.answer = lambda body: "custom"
    llm_simulator.faults = Faults(rpm=1)
    llm_simulator.reset()
    assert llm_simulator.faults == Faults()
    assert llm_simulator.latency == 0.0
    assert llm_simulator.count == 0
    assert ask(llm_simulator, "q").choices[0].message.content == digest_answer("q")


def test_models_and_stats(llm_simulator):
    assert [m.id for m in client(llm_simulator).models.list()] == ["sim-model"]
    ask(llm_simulator, "q")
    assert raw(llm_simulator, "/_sim/stats") == (200, {"count": 1, "statuses": {"200": 1}, "faults": {}})


def test_start_stop_is_idempotent():
    sim = Simulator(answer=lambda body: "fixed")
    with sim:
        assert sim.start() is sim
        assert ask(sim, "q").choices[0].message.content == "fixed"
    sim.stop()
    with pytest.raises(openai.APIConnectionError):
        ask(sim, "q")


def test_count_without_log():
    with Simulator(log=False) as sim:
        ask(sim, "q")
        assert (sim.count, sim.requests) == (1, [])


def test_simulator_process():
    with SimulatorProcess(latency=0.0) as proc:
        assert ask(proc, "p").choices[0].message.content == digest_answer("p")
        assert proc.count == 1
        child = proc.process
    proc.stop()
    assert child.poll() == 0  # exited cleanly on SIGTERM


def test_cli_exits_after_max_seconds():
    child = subprocess.Popen(
        [sys.executable, "-m", "llmframe.testing", "--max-seconds", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().startswith("READY http://127.0.0.1:")
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cli_exits_when_parent_dies():
    # An intermediate Python starts the server, reports its pid and exits at once.
    launcher = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'llmframe.testing'], stdout=subprocess.PIPE, text=True)\n"
        "print(p.stdout.readline().strip(), p.pid, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", launcher], cwd=REPO, capture_output=True, text=True, timeout=30)
    ready, url, pid = out.stdout.split()
    assert ready == "READY"

    def gone() -> bool:
        # An orphan may linger as a zombie where PID 1 does not reap; that counts as gone.
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    try:
        wait_until(gone, timeout=30)
    finally:
        if not gone():
            os.kill(int(pid), 9)


# --- fault injection ----------------------------------------------------------

DURATION = re.compile(r"(\d+h)?(\d+m)?\d+(\.\d+)?s|\d+ms")


def create(c: openai.OpenAI, prompt: str, **kwargs):
    """Send one user prompt and return the raw response, whose headers the parsed one hides."""
    return c.chat.completions.with_raw_response.create(
        model="sim-model", messages=[{"role": "user", "content": prompt}], **kwargs
    )


def post(sim, prompt: str):
    """POST a chat completion with urllib; return (status, headers, body bytes) without parsing."""
    data = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]}).encode()
    req = urllib.request.Request(sim.base_url + "/chat/completions", data, {"Authorization": "Bearer k"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def outcomes(sim) -> list[tuple[int, str | None]]:
    """(status, fault) of each logged request."""
    return [(r.status, r.fault) for r in sim.requests]


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (0.0001, "1ms"), (0.02, "20ms"), (0.5, "500ms"), (1, "1s"), (1.5, "1.5s"), (59.714, "59.714s")]
    + [(360, "6m0s"), (3723.5, "1h2m3.5s")],
)
def test_duration_format(seconds, text):
    assert duration(seconds) == text


def test_faults_are_validated():
    for bad in ({"rpm": 0}, {"error_rates": {200: 0.1}}, {"hang_rate": 0.6, "reset_rate": 0.6}, {"html_rate": -0.1}):
        with pytest.raises(ValueError):
            Faults(**bad)


def refused(c: openai.OpenAI, prompt: str, **kwargs) -> openai.RateLimitError:
    """Send until one is refused (the bucket was emptied and refills in a fraction of a second)."""
    for _ in range(50):  # only requests each more than the refill time apart all pass
        try:
            create(c, prompt, **kwargs)
        except openai.RateLimitError as exc:
            return exc
    pytest.fail("no request was refused")


def test_rpm_limit_answers_429_with_the_true_wait(llm_simulator):
    # Two a minute: a bucket of two, refilled at one per 30 s, so no pause of a loaded machine refills it
    # behind the test's back; every wait below is bounded by the time the test measured.
    llm_simulator.faults = Faults(rpm=2)
    c = client(llm_simulator)
    started = time.monotonic()  # before the first arrival, when the key's bucket is made full
    assert create(c, "row").status_code == create(c, "row").status_code == 200
    with pytest.raises(openai.RateLimitError) as info:
        create(c, "row")
    elapsed_ms = (time.monotonic() - started) * 1000  # at least the refused request's age of the bucket
    assert info.value.body["type"] == "rate_limit_error" and info.value.body["code"] == "rate_limit_exceeded"
    headers = info.value.response.headers
    wait_ms = int(headers["retry-after-ms"])
    assert 30_000 - elapsed_ms <= wait_ms <= 30_000  # what has not refilled of one request since the bucket was full
    assert int(headers["retry-after"]) == math.ceil(wait_ms / 1000)  # whole seconds, rounded up
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("2", "0")
    assert DURATION.fullmatch(headers["x-ratelimit-reset-requests"])
    assert create(client(llm_simulator, api_key="another-key"), "row").status_code == 200  # limits are per key
    # Refused requests take nothing from the bucket, so asking again advises a shorter wait, not a longer one.
    with pytest.raises(openai.RateLimitError) as again:
        create(c, "row")
    assert int(again.value.response.headers["retry-after-ms"]) <= wait_ms
    # Waiting exactly the advised wait is enough: on a bucket of one request that refills in 0.1 s.
    llm_simulator.faults = Faults(rpm=600, burst_seconds=0.1)
    wait_ms = int(refused(c, "row").response.headers["retry-after-ms"])
    assert 0 < wait_ms <= 100
    time.sleep(wait_ms / 1000)  # exactly the advised wait: the thing under test, not a synchronisation
    assert create(c, "row").status_code == 200
    assert [r.fault for r in llm_simulator.requests].count("rpm") == 3
    assert llm_simulator.stats()["faults"] == {"rpm": 3}


def test_ratelimit_headers_on_every_answer(llm_simulator):
    # A slow refill (one request and 100 tokens per 10 s), so the second request's headers show what the
    # first took, however long the machine pauses between them.
    llm_simulator.faults = Faults(rpm=6, tpm=600)
    c = client(llm_simulator)
    first = create(c, "x" * 40, max_tokens=90).headers  # 10 prompt tokens + 90
    # A fresh key's bucket is full, and the headers are reckoned at arrival, so these are exact.
    assert [first[f"x-ratelimit-{h}-requests"] for h in ("limit", "remaining", "reset")] == ["6", "5", "10s"]
    assert [first[f"x-ratelimit-{h}-tokens"] for h in ("limit", "remaining", "reset")] == ["600", "500", "10s"]
    second = create(c, "x" * 40, max_tokens=90).headers
    assert int(second["x-ratelimit-remaining-requests"]) < 5
    assert int(second["x-ratelimit-remaining-tokens"]) < 500
    # Without max_tokens, the completion's tokens are billed instead: 1 prompt + 5 completion.
    other = create(client(llm_simulator, api_key="other-key"), "hello").headers
    assert other["x-ratelimit-remaining-tokens"] == "594"


def test_tpm_limit(llm_simulator):
    llm_simulator.faults = Faults(tpm=60)  # 60 tokens, refilled at one a second
    c = client(llm_simulator)
    prompt = "x" * 40  # 10 tokens
    started = time.monotonic()
    ok = create(c, prompt, max_tokens=30)
    assert ok.headers["x-ratelimit-remaining-tokens"] == "20"
    assert "x-ratelimit-limit-requests" not in ok.headers  # only configured limits are reported
    with pytest.raises(openai.RateLimitError) as info:
        create(c, prompt, max_tokens=30)  # 40 tokens, with 20 left and one a second coming back
    elapsed_ms = (time.monotonic() - started) * 1000
    wait_ms = int(info.value.response.headers["retry-after-ms"])
    assert 20_000 - elapsed_ms <= wait_ms <= 20_000  # 20 tokens short, less what refilled since
    assert outcomes(llm_simulator)[-1] == (429, "tpm")
    # A request larger than the whole limit can never pass, so no wait is advised.
    with pytest.raises(openai.RateLimitError) as info:
        create(c, prompt, max_tokens=60)
    assert "retry-after-ms" not in info.value.response.headers
    assert "too large" in str(info.value)
    # Waiting exactly the advised wait is enough: on a bucket that refills 11 tokens in 0.11 s.
    llm_simulator.faults = Faults(tpm=6000)
    assert create(c, prompt, max_tokens=5990).status_code == 200  # the whole bucket
    wait_ms = int(refused(c, prompt, max_tokens=1).response.headers["retry-after-ms"])
    assert 0 < wait_ms <= 110
    time.sleep(wait_ms / 1000)
    assert create(c, prompt, max_tokens=1).status_code == 200


@pytest.mark.parametrize(
    "status, error",
    [(429, openai.RateLimitError), (503, openai.InternalServerError), (500, openai.InternalServerError)],
)
def test_injected_errors(llm_simulator, status, error):
    llm_simulator.faults = Faults(error_rates={status: 1.0}, retry_after=0.25)
    with pytest.raises(error) as info:
        ask(llm_simulator, "x")
    headers = info.value.response.headers
    assert info.value.status_code == status
    if status in (429, 503):
        assert (headers["retry-after-ms"], headers["retry-after"]) == ("250", "1")
    else:
        assert "retry-after-ms" not in headers and "retry-after" not in headers
    llm_simulator.faults = Faults(error_rates={status: 1.0}, retry_after=None)
    with pytest.raises(error) as info:
        ask(llm_simulator, "x")
    assert "retry-after-ms" not in info.value.response.headers
    assert outcomes(llm_simulator) == [(status, "injected")] * 2


def test_sdk_retries_follow_retry_after(llm_simulator):
    llm_simulator.faults = Faults(error_rates={503: 1.0}, retry_after=0.1)
    with pytest.raises(openai.InternalServerError):
        client(llm_simulator, max_retries=2).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "row 1"}]
        )
    attempts = llm_simulator.attempts_by_prompt()
    assert list(attempts) == ["row 1"] and len(attempts["row 1"]) == 3
    times = [r.time for r in attempts["row 1"]]
    assert all(later - earlier >= 0.095 for earlier, later in zip(times, times[1:]))


def test_latency_distribution(llm_simulator):
    draw = Faults.lognormal(0.01, 0.5, seed=1)
    samples = sorted(draw() for _ in range(1001))
    assert samples[0] > 0 and 0.008 < samples[500] < 0.0125
    llm_simulator.faults = Faults(latency=lambda: 0.2)  # overrides sim.latency
    started = time.monotonic()
    ask(llm_simulator, "x")
    assert time.monotonic() - started >= 0.2


def test_hang_times_the_client_out(llm_simulator):
    llm_simulator.faults = Faults(hang_rate=1.0)
    with pytest.raises(openai.APITimeoutError):
        client(llm_simulator, timeout=0.3).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert outcomes(llm_simulator) == [(0, "hang")]


def test_stop_is_prompt_with_a_request_hanging():
    sim = Simulator(faults=Faults(hang_rate=1.0)).start()
    errors = []

    def run() -> None:
        try:
            create(client(sim, timeout=30), "x")
        except openai.APIError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(lambda: outcomes(sim) == [(0, "hang")], timeout=10)
        started = time.monotonic()
        sim.stop()
        # Waiting for the hanging request would take the server's whole 5 s graceful shutdown.
        assert time.monotonic() - started < 4
    finally:
        sim.stop()
        thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)


def test_reset_cuts_the_body_short(llm_simulator):
    llm_simulator.faults = Faults(reset_rate=1.0)
    with pytest.raises(openai.APIConnectionError):
        ask(llm_simulator, "x")
    with socket.create_connection((llm_simulator.host, llm_simulator.port), timeout=10) as sock:
        data = json.dumps({"messages": [{"role": "user", "content": "x"}]})
        sock.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            f"Content-Length: {len(data)}\r\n\r\n{data}".encode()
        )
        received = b""
        while chunk := sock.recv(65536):  # the server closes the connection
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    assert 0 < len(body) < length
    assert outcomes(llm_simulator) == [(0, "reset")] * 2


def test_malformed_body(llm_simulator):
    llm_simulator.faults = Faults(malformed_rate=1.0)
    # The SDK lets json's own error escape, not an openai.APIError: a client must catch ValueError too.
    with pytest.raises(json.JSONDecodeError):
        ask(llm_simulator, "x")
    status, headers, body = post(llm_simulator, "x")
    assert (status, headers.get_content_type()) == (200, "application/json")
    with pytest.raises(ValueError):
        json.loads(body)
    assert outcomes(llm_simulator) == [(200, "malformed")] * 2


def test_html_from_a_proxy(llm_simulator):
    llm_simulator.faults = Faults(html_rate=1.0)
    with pytest.raises(openai.InternalServerError) as info:
        ask(llm_simulator, "x")
    assert info.value.status_code == 502
    assert info.value.response.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in info.value.body  # the SDK keeps a body it cannot parse as text
    assert outcomes(llm_simulator) == [(502, "html")]


def test_empty_choices(llm_simulator):
    llm_simulator.faults = Faults(empty_choices_rate=1.0)
    reply = ask(llm_simulator, "x")
    assert reply.choices == [] and reply.usage.prompt_tokens == 1
    assert outcomes(llm_simulator) == [(200, "empty_choices")]


def test_seeded_draws_repeat(llm_simulator):
    def run(seed: int) -> list[str | None]:
        llm_simulator.faults = Faults(error_rates={500: 0.3}, malformed_rate=0.2, html_rate=0.2, seed=seed)
        before = llm_simulator.count
        for i in range(30):
            post(llm_simulator, f"row {i}")
        return [r.fault for r in llm_simulator.requests[before:]]

    first = run(7)
    assert set(first) == {None, "injected", "malformed", "html"}
    assert run(7) == first
    assert run(8) != first


def test_cli_fault_flags():
    argv = ["--rpm", "5", "--tpm", "900", "--error-rate", "503=0.25", "--error-rate", "429=0.5"]
    args = _parse([*argv, "--retry-after", "none", "--seed", "3"])
    assert args.faults == Faults(rpm=5, tpm=900, error_rates={503: 0.25, 429: 0.5}, retry_after=None, seed=3)


def test_simulator_process_with_faults():
    with SimulatorProcess(rpm=2, error_rates={503: 1.0}, retry_after=0.2) as proc:
        started = time.monotonic()  # the child's clock is the same system-wide monotonic clock
        for _ in range(2):  # admitted by the limit, then failed by the injected error
            with pytest.raises(openai.InternalServerError) as info:
                ask(proc, "p")
            assert info.value.response.headers["retry-after-ms"] == "200"
        with pytest.raises(openai.RateLimitError) as info:
            ask(proc, "p")
        elapsed_ms = (time.monotonic() - started) * 1000
        assert 30_000 - elapsed_ms <= int(info.value.response.headers["retry-after-ms"]) <= 30_000
        assert proc.stats() == {"count": 3, "statuses": {"429": 1, "503": 2}, "faults": {"injected": 2, "rpm": 1}}


def test_burst_seconds_limit_how_much_of_a_limit_is_spent_at_once():
    from llmframe.testing import Faults

    # 20 a minute with 30 s of burst: 10 at once, then one every 3 s (a whole minute's burst would pass 20).
    with Simulator(faults=Faults(rpm=20, burst_seconds=30)) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)
        started, admitted = time.monotonic(), 0
        while True:
            try:
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            except openai.RateLimitError:
                break
            admitted += 1
            assert admitted < 20, "the limit was spent at once: burst_seconds did not hold it back"
        # One more per 3 s the requests took: a loaded machine may see 11, never a whole minute's 20.
        assert 10 <= admitted <= 10 + (time.monotonic() - started) / 3
        assert sim.stats()["faults"] == {"rpm": 1}


# --- structured outputs -------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


class Review(BaseModel):
    sentiment: typing.Literal["positive", "negative", "neutral"]
    color: Color
    size: Size
    stars: int = Field(ge=1, le=5)
    score: float
    confident: bool
    tags: list[str]
    counts: dict[str, int]


class Address(BaseModel):
    street: str = Field(min_length=3, max_length=40)
    city: str
    zip: str = Field(pattern=r"^\d{5}$")


class Person(BaseModel):
    name: str
    nickname: typing.Optional[str] = None
    age: typing.Optional[int] = Field(default=None, ge=0, le=120)
    address: Address
    previous: list[Address]
    partner_address: Address | None = None
    born: dt.date
    seen: dt.datetime


class Node(BaseModel):
    label: str
    weight: float = Field(gt=0, lt=1)
    children: list[Node]
    parent: typing.Optional[Node] = None


MODELS = [Review, Person, Node]
# The openai SDK's own strict conversion (every property required, additionalProperties false), and pydantic's.
SCHEMAS = {"strict": to_strict_json_schema, "plain": lambda model: model.model_json_schema()}


def structured(sim, prompt: str, schema: dict, **kwargs):
    """Ask for a JSON answer conforming to schema; return the ChatCompletion."""
    response_format = {"type": "json_schema", "json_schema": {"name": "m", "schema": schema, "strict": True}}
    return ask(sim, prompt, response_format=response_format, **kwargs)


def check_schema(value, schema: dict) -> None:
    """Validate value against schema with jsonschema, formats included, where jsonschema is installed."""
    try:
        import jsonschema
    except ImportError:  # pydantic's validation is the check that matters here
        return
    validator = jsonschema.Draft202012Validator
    validator(schema, format_checker=validator.FORMAT_CHECKER).validate(value)


@pytest.mark.parametrize("build", sorted(SCHEMAS))
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_structured_answer_conforms(llm_simulator, model, build):
    schema = SCHEMAS[build](model)
    replies = [structured(llm_simulator, f"row {i}", schema) for i in range(6)]
    contents = [r.choices[0].message.content for r in replies]
    for reply, content in zip(replies, contents):
        assert reply.choices[0].finish_reason == "stop"
        model.model_validate_json(content)
        check_schema(json.loads(content), schema)
    assert structured(llm_simulator, "row 0", schema).choices[0].message.content == contents[0]
    assert len(set(contents)) == len(contents)  # a text field tells prompts apart
    assert [r.fault for r in llm_simulator.requests] == [None] * 7


@pytest.mark.parametrize("build", sorted(SCHEMAS))
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_schema_instances_conform_for_many_seeds(model, build):
    schema = SCHEMAS[build](model)
    before = json.dumps(schema, sort_keys=True)
    values = [instance(schema, f"seed {i}") for i in range(100)]
    assert json.dumps(schema, sort_keys=True) == before  # the schema is not modified
    for value in values:
        model.model_validate(value)
        check_schema(value, schema)
    assert values == [instance(schema, f"seed {i}") for i in range(100)]
    if model is Person:
        # Optional fields are mostly filled in, sometimes null (or, where not required, left out).
        nulls = [v.get("nickname") for v in values].count(None) / len(values)
        assert 0.05 < nulls < (0.35 if build == "strict" else 0.6)
        if build == "plain":
            assert 0.05 < ["nickname" not in v for v in values].count(True) / len(values) < 0.45
    if model is Review:
        assert {v["sentiment"] for v in values} == {"positive", "negative", "neutral"}
        assert {v["stars"] for v in values} == {1, 2, 3, 4, 5}
        assert {type(v["score"]) for v in values} == {float}
        assert all(1 <= len(v["counts"]) <= 3 and len(v["tags"]) >= 1 for v in values)
    if model is Node:
        assert any(v["children"] and v["children"][0]["children"] for v in values)  # it does recurse


def test_sdk_parse_helper_gets_a_parsed_model(llm_simulator):
    reply = client(llm_simulator).chat.completions.parse(
        model="sim-model", messages=[{"role": "user", "content": "who?"}], response_format=Person
    )
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, Person) and isinstance(parsed.born, dt.date)
    sent = llm_simulator.requests[0].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Person"
    assert sent["json_schema"]["schema"] == to_strict_json_schema(Person)


def test_json_object_and_custom_answers(llm_simulator):
    reply = ask(llm_simulator, "hi", response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content) == {"answer": digest_answer("hi")}
    assert ask(llm_simulator, "hi", response_format={"type": "text"}).choices[0].message.content == digest_answer("hi")
    llm_simulator.answer = lambda body: "custom"  # a user's answer function has the last word
    assert structured(llm_simulator, "hi", Review.model_json_schema()).choices[0].message.content == "custom"


def test_structured_answer_is_cut_only_by_a_small_max_tokens(llm_simulator):
    schema = to_strict_json_schema(Review)
    full = structured(llm_simulator, "x", schema).choices[0].message.content
    reply = structured(llm_simulator, "x", schema, max_tokens=len(full))
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == (full, "stop")
    reply = structured(llm_simulator, "x", schema, max_tokens=3)
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == (full[:12], "length")


def test_bad_response_format_is_400(llm_simulator):
    for response_format in (
        {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},  # no name
        {"type": "json_schema"},
        {"type": "xml"},
    ):
        with pytest.raises(openai.BadRequestError):
            ask(llm_simulator, "x", response_format=response_format)


def test_schema_keywords():
    schema = {
        "definitions": {"Tag": {"type": "string", "maxLength": 4}},
        "type": "object",
        "properties": {
            "const": {"const": {"fixed": [1, 2]}},
            "either": {"type": ["integer", "string"]},
            "ref": {"$ref": "#/definitions/Tag"},
            "all": {"allOf": [{"$ref": "#/definitions/Tag"}]},
            "one": {"oneOf": [{"type": "boolean"}, {"type": "null"}]},
            "step": {"type": "integer", "minimum": 10, "maximum": 30, "multipleOf": 7},
            "open": {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 0.51},
            "fraction": {"type": "number", "multipleOf": 0.25, "minimum": 1, "maximum": 2},
            "long": {"type": "string", "minLength": 40},
            "short": {"type": "string", "minLength": 1, "maxLength": 3},
            "email": {"type": "string", "format": "email"},
            "uri": {"type": "string", "format": "uri"},
            "uuid": {"type": "string", "format": "uuid"},
            "time": {"type": "string", "format": "time"},
            "ipv4": {"type": "string", "format": "ipv4"},
            "code": {"type": "string", "pattern": "^[A-Z]{2}(-[0-9]+)?$"},
            "hard": {"type": "string", "pattern": "^(a+)\\1$"},  # a back-reference: ignored
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
            "set": {"type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True, "minItems": 3},
            "few": {"type": "array", "items": {"type": "boolean"}, "minItems": 4, "maxItems": 4},
            "keys": {"type": "object", "additionalProperties": {"type": "integer"},
                     "propertyNames": {"enum": ["x", "y"]}},
            "any": {},
            "bag": {"type": "object", "additionalProperties": True, "minProperties": 2},
            "untyped": {"properties": {"a": {"type": "integer"}}, "required": ["a"]},
        },
        "additionalProperties": False,
    }
    for i in range(60):
        value = instance(schema, f"s{i}")
        assert set(value) == set(schema["properties"])  # closed: every property, required or not
        check_schema(value, {**schema, "properties": {**schema["properties"], "hard": {"type": "string"}}})
        assert value["const"] == {"fixed": [1, 2]}
        assert value["step"] in (14, 21, 28) and 0.5 < value["open"] < 0.51
        assert re.fullmatch(r"[A-Z]{2}(-[0-9]+)?", value["code"])
        assert isinstance(value["hard"], str)
        assert sorted(value["set"]) == [1, 2, 3] and len(value["keys"]) <= 2
        assert value["untyped"]["a"] == int(value["untyped"]["a"])
    assert instance({"type": "string"}, "x") == "text-a2619fef"  # a hash of the seed, the same in every process


def test_endless_schemas_are_refused():
    endless = {"$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "required": ["a"]}},
               "$ref": "#/$defs/A"}
    with pytest.raises(ValueError):
        instance(endless, "x")
    loop = {"$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"}
    with pytest.raises(ValueError):
        instance(loop, "x")
    with pytest.raises(ValueError):
        instance({"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}]}}, "$ref": "#/$defs/A"}, "x")
    # A union that holds itself ends in its null branch.
    optional = {"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}}, "$ref": "#/$defs/A"}
    assert instance(optional, "x") is None


@pytest.mark.parametrize("build", sorted(SCHEMAS))
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_violations_break_the_schema(model, build):
    schema = SCHEMAS[build](model)
    kinds = set()
    for i in range(40):
        good, bad = instance(schema, f"v{i}"), violation(schema, f"v{i}")
        with pytest.raises(pydantic.ValidationError):
            model.model_validate_json(json.dumps(bad))
        if set(bad) < set(good):
            kinds.add("missing")
        else:
            [key] = [k for k in good if good[k] != bad[k]]
            kinds.add("enum" if str(bad[key]).startswith("not-in-enum") else "type")
    assert kinds == ({"missing", "type", "enum"} if model is Review else {"missing", "type"})
    with pytest.raises(ValueError):
        violation({}, "x")  # anything conforms
    assert violation({"type": "integer"}, "x") == violation({"type": "integer"}, "x") == "not-valid-" + violation(
        {"type": "integer"}, "x"
    ).removeprefix("not-valid-")


def test_invalid_json_variants():
    text = json.dumps(instance(to_strict_json_schema(Review), "x"))
    variants = {invalid_json(text, f"s{i}") for i in range(40)}
    assert len(variants) == 4
    for spoiled in [*variants, invalid_json("12345", "s"), invalid_json("{}", "s")]:
        with pytest.raises(ValueError):
            json.loads(spoiled)


def test_invalid_json_fault(llm_simulator):
    llm_simulator.faults = Faults(invalid_json_rate=1.0)
    schema = to_strict_json_schema(Person)
    for i in range(8):
        reply = structured(llm_simulator, f"row {i}", schema)
        assert reply.choices[0].finish_reason == "stop"
        with pytest.raises(ValueError):
            json.loads(reply.choices[0].message.content)
        with pytest.raises(pydantic.ValidationError):
            Person.model_validate_json(reply.choices[0].message.content)
    with pytest.raises(ValueError):
        json.loads(ask(llm_simulator, "obj", response_format={"type": "json_object"}).choices[0].message.content)
    assert ask(llm_simulator, "plain").choices[0].message.content == digest_answer("plain")  # text is left alone
    assert outcomes(llm_simulator) == [(200, "invalid_json")] * 9 + [(200, None)]
    assert llm_simulator.stats()["faults"] == {"invalid_json": 9}


def test_schema_violation_fault(llm_simulator):
    llm_simulator.faults = Faults(schema_violation_rate=1.0)
    for model in MODELS:
        for build in SCHEMAS.values():
            reply = structured(llm_simulator, f"row {model.__name__}", build(model))
            assert reply.choices[0].finish_reason == "stop"
            json.loads(reply.choices[0].message.content)
            with pytest.raises(pydantic.ValidationError):
                model.model_validate_json(reply.choices[0].message.content)
    # A custom answer is spoiled too, when it is JSON.
    llm_simulator.answer = lambda body: json.dumps({"label": "x", "weight": 0.5, "children": [], "parent": None})
    content = structured(llm_simulator, "custom", to_strict_json_schema(Node)).choices[0].message.content
    with pytest.raises(pydantic.ValidationError):
        Node.model_validate_json(content)
    llm_simulator.answer = default_answer
    json_object = ask(llm_simulator, "obj", response_format={"type": "json_object"}).choices[0].message.content
    assert json.loads(json_object) == {"answer": digest_answer("obj")}  # no schema to break
    assert outcomes(llm_simulator) == [(200, "schema_violation")] * 7 + [(200, None)]


def test_structured_faults_mix_with_seeded_draws(llm_simulator):
    schema = to_strict_json_schema(Review)

    def run(seed: int) -> list[str | None]:
        llm_simulator.faults = Faults(invalid_json_rate=0.3, schema_violation_rate=0.3, seed=seed)
        before = llm_simulator.count
        for i in range(15):
            structured(llm_simulator, f"row {i}", schema)
        return [r.fault for r in llm_simulator.requests[before:]]

    first = run(3)
    assert set(first) == {None, "invalid_json", "schema_violation"}
    assert run(3) == first
    with pytest.raises(ValueError):
        Faults(invalid_json_rate=0.6, schema_violation_rate=0.5)


def test_cli_structured_fault_flags():
    args = _parse(["--invalid-json-rate", "0.25", "--schema-violation-rate", "0.5"])
    assert args.faults == Faults(invalid_json_rate=0.25, schema_violation_rate=0.5)


def test_simulator_process_with_structured_faults():
    with SimulatorProcess(schema_violation_rate=1.0) as proc:
        content = structured(proc, "p", to_strict_json_schema(Review)).choices[0].message.content
        with pytest.raises(pydantic.ValidationError):
            Review.model_validate_json(content)
        assert proc.stats()["faults"] == {"schema_violation": 1}


def test_retyped_and_refused_format_faults_are_validated():
    with pytest.raises(ValueError, match="retyped_rate needs retyped"):
        Faults(retyped_rate=0.5)
    with pytest.raises(ValueError, match="refused_formats"):
        Faults(refused_formats=frozenset({"xml"}))


def test_retyped_fault_changes_the_reply_fields(llm_simulator):
    llm_simulator.faults = Faults(retyped_rate=1.0, retyped={"choices.0.finish_reason": 3,
                                                              "choices.0.message.content": lambda text: [text]})
    request = urllib.request.Request(
        f"{llm_simulator.base_url}/chat/completions", method="POST",
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode())
    with urllib.request.urlopen(request, timeout=30) as reply:
        body = json.loads(reply.read())
    assert body["choices"][0]["finish_reason"] == 3 and body["choices"][0]["message"]["content"] == [digest_answer("hi")]
    assert llm_simulator.stats()["faults"] == {"retyped": 1}
    assert llm_simulator.requests[0].billed == (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])


def test_refused_formats_answer_500_as_llama_cpp_does(llm_simulator):
    llm_simulator.faults = Faults(refused_formats=frozenset({"json_schema"}))
    with pytest.raises(openai.InternalServerError, match="Input should be 'text' or 'json_object'"):
        structured(llm_simulator, "p", {"type": "object", "properties": {}})
    assert json.loads(ask(llm_simulator, "p", response_format={"type": "json_object"}).choices[0].message.content)
    assert ask(llm_simulator, "p").choices[0].message.content == digest_answer("p")
    assert llm_simulator.stats()["faults"] == {"refused_format": 1} and llm_simulator.requests[0].billed == (0, 0)


def test_cli_refuse_format_flag():
    args = _parse(["--refuse-format", "json_schema"])
    assert args.faults == Faults(refused_formats=frozenset({"json_schema"}))
