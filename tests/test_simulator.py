"""Tests of llmframe.testing: the simulator over real HTTP, through the real openai SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from llmframe.testing import SimulatedError, Simulator, SimulatorProcess, default_answer, digest_answer
from llmframe.testing.pytest_plugin import llm_simulator, llm_simulator_server  # noqa: F401

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]


def client(sim) -> openai.OpenAI:
    """An SDK client for a simulator, without retries so errors surface at once."""
    return openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)


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
    llm_simulator.reset()
    assert llm_simulator.latency == 0.0
    assert llm_simulator.count == 0
    assert ask(llm_simulator, "q").choices[0].message.content == digest_answer("q")


def test_models_and_stats(llm_simulator):
    assert [m.id for m in client(llm_simulator).models.list()] == ["sim-model"]
    ask(llm_simulator, "q")
    assert raw(llm_simulator, "/_sim/stats") == (200, {"count": 1})


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
