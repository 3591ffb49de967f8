"""Run callbacks: on_row=, on_progress=, on_done= called off the engine's loop, never able to lose an answer."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from pydantic import BaseModel

from llmframe.errors import ConfigError
from llmframe.testing import SimulatedError, digest_answer


class Verdict(BaseModel):
    label: str
    score: int


def frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"q{i}" for i in range(n)]}, index=[f"r{i}" for i in range(n)])


def test_on_row_sees_every_row_with_its_answer_error_and_usage(gen, sim):
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(400, "refused")) if "q1" in str(
        body["messages"]) else digest_answer(body["messages"][-1]["content"])
    rows, reports = [], []
    df = pd.concat([frame(), frame().iloc[:1].rename(index={"r0": "dup"})])  # a repeated prompt: two rows, one request
    out = gen(df, "{q}", on_row=lambda e: rows.append((e, threading.current_thread().name)),
              on_done=reports.append)
    by_index = {e.index: e for e, _ in rows}
    assert sorted(by_index) == ["dup", "r0", "r1", "r2"] and len(rows) == 4
    assert by_index["r0"].answer == out.loc["r0", "response"] == by_index["dup"].answer
    assert by_index["r1"].answer is None and by_index["r1"].error.startswith("HTTP 400")
    assert by_index["r2"].usage["input_tokens"] > 0 and by_index["r2"].usage["output_tokens"] > 0
    assert by_index["r2"].row == 2 and not by_index["r2"].cached
    assert {name for _, name in rows} == {"llmframe-callbacks"}  # never the engine's loop, nor the caller's
    assert sim.count == 3  # a 400 is not retried; the repeated prompt is sent once
    (report,) = reports
    assert report["state"] == "done" and report["rows"] == 4 and report["failed"] == 1


def test_cached_rows_are_reported_as_cached_and_structured_answers_as_objects(gen, sim):
    gen(frame(), "Judge {q}", output=Verdict)
    rows = []
    gen(frame(), "Judge {q}", output=Verdict, on_row=rows.append)
    assert len(rows) == 3 and all(e.cached and isinstance(e.answer, Verdict) for e in rows)


def test_a_slow_callback_never_stalls_requests(gen, sim):
    release = threading.Event()
    seen = []

    def slow(event):
        release.wait(30)  # holds the callback thread until every request has been answered
        seen.append(event.index)

    def answer(body):
        if sim.count >= 20:
            release.set()
        return "ok"

    sim.answer = answer
    out = gen(frame(20), "{q}", on_row=slow, max_concurrency=4)
    assert out["response"].eq("ok").all() and sim.count == 20
    assert len(seen) == 20  # generate returned only once every row had been seen


def test_a_raising_callback_is_reported_and_loses_no_answer(gen, sim, cache_dir):
    def boom(event):
        raise ValueError(f"no database for {event.index}")

    with pytest.warns(RuntimeWarning, match=r"run callbacks raised \d+ time"):
        out = gen(frame(), "{q}", on_row=boom, on_progress=lambda s: 1 / 0)
    assert out["response"].notna().all()
    errors = out.attrs["llmframe"]["callback_errors"]
    assert any("on_row raised ValueError: no database for r0" in e for e in errors)
    assert any("on_progress raised ZeroDivisionError" in e for e in errors)
    again = gen(frame(), "{q}")
    assert again.attrs["llmframe"]["cached"] == 3  # every answer reached the cache


def test_on_progress_gets_counts_and_the_last_one_is_complete(gen, sim):
    sim.latency = 0.05
    statuses = []
    gen(frame(12), "{q}", on_progress=statuses.append, max_concurrency=2)
    assert statuses and statuses[-1]["done"] == statuses[-1]["rows"] == 12
    assert [s["done"] for s in statuses] == sorted(s["done"] for s in statuses)


def test_on_done_of_a_background_job(sim, cache_dir):
    done = threading.Event()
    reports = []
    job = frame().llm.submit("{q}", model="openai:sim-model", base_url=sim.base_url, api_key=sim.api_key,
                             mode="online", progress=False, on_done=lambda r: reports.append(r) or done.set())
    assert done.wait(60) and reports[0]["state"] == "done" and reports[0]["rows"] == 3
    assert job.wait().result()["response"].notna().all()


def test_on_row_in_batch_mode(gen, sim):
    rows = []
    gen(frame(), "{q}", mode="batch", poll_interval=0.05, on_row=rows.append)
    assert sorted(e.index for e in rows) == ["r0", "r1", "r2"] and all(e.answer for e in rows)


def test_a_callback_that_is_not_callable_is_refused_before_sending(gen, sim):
    with pytest.raises(ConfigError, match="on_row must be a function"):
        gen(frame(), "{q}", on_row="print")
    assert sim.count == 0


def test_a_run_stopped_by_the_breaker_still_tells_on_done(gen, sim):
    from llmframe.errors import RunAborted

    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(401, "invalid key"))
    reports = []
    with pytest.raises(RunAborted):
        gen(frame(50), "{q}", on_done=reports.append, max_concurrency=2)
    deadline = time.monotonic() + 30
    while not reports and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reports[0]["state"] == "stopped" and "API key" in reports[0]["error"]
