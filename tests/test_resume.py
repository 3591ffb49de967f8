"""Nothing lost: a killed or interrupted process keeps its finished answers, and a re-run sends only the rest.

The client runs in a real subprocess; the simulator runs in this process, so its request log
outlives the client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from llmframe.stores.diskcache import Store

from .conftest import MODEL, answers_read

pytestmark = pytest.mark.slow

CLIENT = textwrap.dedent(
    """
    import asyncio, json, signal, sys
    # A parent started in the background (nohup, `&` in a script, some CI runners) hands SIGINT down
    # ignored, and Python then installs no KeyboardInterrupt handler; a terminal or a Jupyter kernel does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import pandas as pd
    import llmframe
    from llmframe import constants

    rows, base_url, concurrency, in_loop = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "loop"
    if len(sys.argv) > 5:  # where answers are written: on the writer thread only, or on the loop from the start
        on_loop = sys.argv[5] == "loop"
        constants.CACHE_INLINE_WRITE_SECONDS = constants.CACHE_JOURNAL_INLINE_SECONDS = 60.0 if on_loop else 0.0
        constants.CACHE_INLINE_AFTER_WRITES = 0 if on_loop else 1
    df = pd.DataFrame({"x": [f"row {i}" for i in range(rows)]})

    def run():
        return df.llm.generate("{x}", model="openai:sim-model", base_url=base_url, api_key="sim-key",
                               max_concurrency=concurrency, progress=False)

    async def cell():
        # What a notebook does: the blocking call runs while an event loop is running in this thread.
        return run()

    try:
        if in_loop:
            # Not asyncio.run: its own SIGINT handler would hide Ctrl-C, which Jupyter's kernel does not.
            out = asyncio.new_event_loop().run_until_complete(cell())
        else:
            out = run()
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        sys.exit(3)
    print(json.dumps(out.attrs["llmframe"]), flush=True)
    """
)


def start_client(rows: int, base_url: str, concurrency: int, mode: str, cache_dir,
                 writes: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "LLMFRAME_CACHE_DIR": str(cache_dir)}
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(rows), base_url, str(concurrency), mode, *([writes] if writes else [])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def signal_when(client: subprocess.Popen, sig: int, condition, deadline_s: float = 60,
                before=lambda: None) -> tuple[str, str, float]:
    """Send sig once condition() holds (the client still running), just after before(); return the client's
    output and how long it took to exit, from the signal."""
    try:
        deadline = time.monotonic() + deadline_s
        while not condition():
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, "timed out waiting for the client to make progress"
            time.sleep(0.01)
        before()
        sent = time.monotonic()
        client.send_signal(sig)
        out, err = client.communicate(timeout=STOP_DEADLINE_S)
        return out, err, time.monotonic() - sent
    finally:
        client.kill()


STOP_DEADLINE_S = 30.0  # a stopped client exits in a second or two; a loaded machine may take many times that


def prompts_sent(sim, since: int) -> set[str]:
    return {entry.body["messages"][-1]["content"] for entry in sim.requests[since:]}


def rerun(rows: int, sim) -> dict:
    df = pd.DataFrame({"x": [f"row {i}" for i in range(rows)]})
    out = df.llm.generate("{x}", model=MODEL, base_url=sim.base_url, api_key=sim.api_key, progress=False)
    assert out["response_error"].isna().all() and out["response"].notna().all()
    return out.attrs["llmframe"]


def test_sigkill_half_way_then_rerun_sends_only_missing_rows(sim, cache_dir):
    rows = 3000
    sim.latency = 0.05  # 8 at a time: about 20 s for every row, so the kill comes well before the end
    client = start_client(rows, sim.base_url, 8, "plain", cache_dir)
    # Killed once the run has gone on for a while, so answers read long before the kill exist to be checked.
    signal_when(client, signal.SIGKILL, lambda: sim.count > 0 and time.monotonic() - sim.requests[0].time > 6)
    killed = time.monotonic()
    served_before_kill = sim.count
    saved = len(Store(str(cache_dir)))
    assert 0 < saved <= served_before_kill < rows
    # Answers are written every 0.2 s: only the last moments before the kill may be lost, never an answer
    # the client had read seconds before (3 s: many times the flush interval, on however busy a machine).
    long_read = answers_read(sim, by=killed - 3)
    assert len(long_read) >= 8, "the client had read answers seconds before the kill"
    report = rerun(rows, sim)
    assert not long_read & prompts_sent(sim, served_before_kill), "an answer read before the kill was lost"
    assert report["cached"] == saved
    assert report["requests_sent"] == rows - saved
    assert sim.count - served_before_kill == rows - saved


@pytest.mark.parametrize("writes", ["thread", "loop"])  # a slow disk's writer thread, a fast disk's loop
def test_sigkill_re_asks_at_most_the_requests_in_flight(sim, cache_dir, writes):
    rows, in_flight = 600, 20
    sim.latency = 0.1
    client = start_client(rows, sim.base_url, in_flight, "plain", cache_dir, writes)
    signal_when(client, signal.SIGKILL, lambda: sim.count >= 150)
    saved = len(Store(str(cache_dir)))
    assert 0 < saved < rows
    report = rerun(rows, sim)
    assert report["cached"] == saved and report["requests_sent"] == rows - saved
    # Every row is asked once, and again only if the killed process had asked without its answer reaching
    # the disk. Counted from the simulator, whenever the killed process's last requests arrived there.
    re_asked = sim.count - rows
    assert 0 <= re_asked <= in_flight, f"{re_asked} rows were asked twice; {in_flight} were in flight"


def test_interrupt_in_a_running_event_loop_stops_fast_and_keeps_answers(sim, cache_dir):
    rows, concurrency = 2000, 16
    sim.latency = 0.3
    client = start_client(rows, sim.base_url, concurrency, "loop", cache_dir)
    # Over a wave of 16 answered, more in flight, thousands still queued. From the interrupt on, a new
    # request takes a minute: a client that waited for its requests in flight could not exit in time.
    out, err, stopped_after = signal_when(client, signal.SIGINT, lambda: sim.count >= 40,
                                          before=lambda: setattr(sim, "latency", 2 * STOP_DEADLINE_S))
    assert "INTERRUPTED" in out, err
    assert client.returncode == 3
    assert stopped_after < STOP_DEADLINE_S, f"interrupt took {stopped_after:.2f} s"
    saved = len(Store(str(cache_dir)))
    served_before = sim.count
    # Every answer the client had read is kept: the interrupt loses only requests in flight.
    read = answers_read(sim)
    assert len(read) >= 40 - concurrency, "40 requests on at most 16 connections: 24 follow a reply read"
    sim.latency = 0.0
    report = rerun(rows, sim)
    assert not read & prompts_sent(sim, served_before), "an answer the client had read was lost"
    assert report["cached"] == saved and report["requests_sent"] == rows - saved
    assert sim.count - served_before == rows - saved


def test_two_processes_on_one_cache_at_once(sim, cache_dir):
    rows = 400
    sim.latency = 0.01
    clients = [start_client(rows, sim.base_url, 8, "plain", cache_dir) for _ in range(2)]
    reports = []
    for client in clients:
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        reports.append(json.loads(out))
    assert all(r["failed"] == 0 and r["rows"] == rows for r in reports)
    assert len(Store(str(cache_dir))) == rows, "one answer per row, no corruption"
    assert sum(r["requests_sent"] for r in reports) == sim.count
    # Rows both processes asked for are paid twice: the report says how many.
    assert sum(r["concurrent_duplicates"] for r in reports) == sim.count - rows
    report = rerun(rows, sim)
    assert report["cached"] == rows and report["requests_sent"] == 0
