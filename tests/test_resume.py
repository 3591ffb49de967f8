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

from llmframe.cache import Store

from .conftest import MODEL

pytestmark = pytest.mark.slow

CLIENT = textwrap.dedent(
    """
    import asyncio, json, signal, sys
    # A parent started in the background (nohup, `&` in a script, some CI runners) hands SIGINT down
    # ignored, and Python then installs no KeyboardInterrupt handler; a terminal or a Jupyter kernel does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import pandas as pd
    import llmframe

    rows, base_url, concurrency, in_loop = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "loop"
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


def start_client(rows: int, base_url: str, concurrency: int, mode: str, cache_dir) -> subprocess.Popen:
    env = {**os.environ, "LLMFRAME_CACHE_DIR": str(cache_dir)}
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(rows), base_url, str(concurrency), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def signal_when(client: subprocess.Popen, sig: int, condition, deadline_s: float = 60) -> tuple[str, str, float]:
    """Send sig once condition() holds (the client still running); return its output and how long it took to exit."""
    try:
        deadline = time.monotonic() + deadline_s
        while not condition():
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, "timed out waiting for the client to make progress"
            time.sleep(0.01)
        sent = time.monotonic()
        client.send_signal(sig)
        out, err = client.communicate(timeout=30)
        return out, err, time.monotonic() - sent
    finally:
        client.kill()


def rerun(rows: int, sim) -> dict:
    df = pd.DataFrame({"x": [f"row {i}" for i in range(rows)]})
    out = df.llm.generate("{x}", model=MODEL, base_url=sim.base_url, api_key=sim.api_key, progress=False)
    assert out["response_error"].isna().all() and out["response"].notna().all()
    return out.attrs["llmframe"]


def test_sigkill_half_way_then_rerun_sends_only_missing_rows(sim, cache_dir):
    rows = 3000
    sim.latency = 0.01
    client = start_client(rows, sim.base_url, 8, "plain", cache_dir)
    signal_when(client, signal.SIGKILL, lambda: sim.count >= 1000)
    served_before_kill = sim.count
    saved = len(Store(str(cache_dir)))
    assert 0 < saved <= served_before_kill < rows
    # Answers are flushed every few hundred milliseconds: only the last moments before the kill are lost.
    assert saved >= served_before_kill - 400, (saved, served_before_kill)
    report = rerun(rows, sim)
    assert report["cached"] == saved
    assert report["requests_sent"] == rows - saved
    assert sim.count - served_before_kill == rows - saved


def test_sigkill_re_asks_at_most_the_requests_in_flight(sim, cache_dir):
    rows, in_flight = 600, 20
    sim.latency = 0.1
    client = start_client(rows, sim.base_url, in_flight, "plain", cache_dir)
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
    rows = 2000
    sim.latency = 0.3
    client = start_client(rows, sim.base_url, 16, "loop", cache_dir)
    # Two waves of 16 answered, a third in flight, thousands still queued.
    out, err, stopped_after = signal_when(client, signal.SIGINT, lambda: sim.count >= 40)
    assert "INTERRUPTED" in out, err
    assert client.returncode == 3
    assert stopped_after < 2.5, f"interrupt took {stopped_after:.2f} s"
    saved = len(Store(str(cache_dir)))
    assert saved >= 32, saved
    served_before = sim.count
    sim.latency = 0.0
    report = rerun(rows, sim)
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
