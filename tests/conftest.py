"""Shared fixtures: a private cache directory per test, and the simulator through the real SDK."""

from __future__ import annotations

import _thread
import math
import threading
import time

import pytest

import llmframe  # noqa: F401  (registers df.llm)


MODEL = "openai:sim-model"


def ctrl_c_when(condition, deadline_s: float = 60.0) -> None:
    """Interrupt the main thread, as Ctrl-C does, once condition() holds (or after deadline_s)."""

    def press() -> None:
        deadline = time.monotonic() + deadline_s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        _thread.interrupt_main()

    threading.Thread(target=press, daemon=True).start()


def answers_read(sim, by: float = math.inf) -> set[str]:
    """The prompts whose answers the client had read by time.monotonic() `by`, as the simulator's log proves it.

    A client sends a connection's next request only once it has read the reply before (HTTP/1.1, no
    pipelining), so every request but the last on each connection had its answer read when the next arrived.
    """
    last: dict[str | None, object] = {}
    read: set[str] = set()
    for entry in sim.requests:  # in order of arrival
        previous = last.get(entry.peer)
        if previous is not None and entry.time <= by:
            read.add(previous.body["messages"][-1]["content"])
        last[entry.peer] = entry
    return read


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test gets an empty cache directory, and never the user's."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("LLMFRAME_CACHE_DIR", str(directory))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return directory


@pytest.fixture(autouse=True)
def fresh_limiters(monkeypatch):
    """Learned rate limits are process-wide by design; tests must not inherit each other's."""
    from llmframe.engine import ratelimit

    monkeypatch.setattr(ratelimit, "_limiters", {})


@pytest.fixture
def sim(llm_simulator):
    """The session's simulator, reset for this test."""
    return llm_simulator


@pytest.fixture
def gen(sim):
    """Call obj.llm.generate against the simulator, without a progress bar."""

    def call(obj, template, **kwargs):
        kwargs.setdefault("model", MODEL)
        kwargs.setdefault("base_url", sim.base_url)
        kwargs.setdefault("api_key", sim.api_key)
        kwargs.setdefault("progress", False)
        return obj.llm.generate(template, **kwargs)

    return call
