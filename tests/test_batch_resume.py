"""A batch run killed (SIGKILL) or interrupted (Ctrl-C) after submission re-attaches when re-run.

The client runs in a real subprocess; the simulator runs in this process, so the batches it
created, and how many times each was created, outlive the client.
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

from llmframe import constants
from llmframe.testing import digest_answer
from llmframe.testing.batches import BatchSettings

pytestmark = pytest.mark.slow

CLIENT = textwrap.dedent(
    """
    import json, signal, sys
    # A parent started in the background (nohup, `&` in a script, some CI runners) hands SIGINT down
    # ignored, and Python then installs no KeyboardInterrupt handler; a terminal or a Jupyter kernel does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import pandas as pd
    import llmframe
    from llmframe.providers import provider_class

    rows, provider, base_url, chunk = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    provider_class(provider).batch_limits = (chunk, 10**9)  # small test limits: several batches per call
    df = pd.DataFrame({"x": [f"row {i}" for i in range(rows)]})
    try:
        out = df.llm.generate("{x}", model=f"{provider}:sim-model", base_url=base_url, api_key="sim-key",
                              mode="batch", poll_interval=0.05, progress=False)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        sys.exit(3)
    print(json.dumps({"report": out.attrs["llmframe"], "answers": out["response"].tolist()}), flush=True)
    """
)

ROWS, CHUNK = 25, 10  # three batches: 10, 10 and 5 requests


def start(provider: str, base_url: str, cache_dir) -> subprocess.Popen:
    env = {**os.environ, "LLMFRAME_CACHE_DIR": str(cache_dir)}
    return subprocess.Popen([sys.executable, "-c", CLIENT, str(ROWS), provider, base_url, str(CHUNK)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def all_submitted(cache_dir) -> bool:
    """True once the job file records a provider id for every chunk (i.e. after submission)."""
    for path in (cache_dir / constants.BATCH_STATE_DIR).glob("*.json"):
        try:
            chunks = json.loads(path.read_text())["chunks"]
        except (ValueError, KeyError):
            continue  # mid-replace
        if len(chunks) == 3 and all(c["batch_id"] for c in chunks):
            return True
    return False


def wait_for(condition, client: subprocess.Popen, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if client.poll() is not None:
            raise AssertionError(f"client ended early: {client.communicate()}")
        if time.monotonic() > deadline:
            client.kill()
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def rerun(provider: str, base_url: str, cache_dir) -> dict:
    client = start(provider, base_url, cache_dir)
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_sigkill_after_submission_then_rerun_reattaches(sim, cache_dir, provider):
    settings = sim.batches.settings = BatchSettings(seconds=600.0)  # still running when the client dies
    url = {"openai": sim.base_url, "anthropic": sim.anthropic_base_url, "gemini": sim.gemini_base_url}[provider]
    client = start(provider, url, cache_dir)
    wait_for(lambda: all_submitted(cache_dir), client)
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=30)
    assert sorted(c.requests for c in sim.batches.created) == [5, 10, 10]
    settings.seconds = 0.05  # the running batches now finish
    result = rerun(provider, url, cache_dir)
    assert result["answers"] == [digest_answer(f"row {i}") for i in range(ROWS)]
    assert result["report"]["failed"] == 0
    assert len(sim.batches.created) == 3  # exactly one creation per chunk: the re-run re-attached
    frame = pd.DataFrame({"x": [f"row {i}" for i in range(ROWS)]})
    again = frame.llm.generate("{x}", model=f"{provider}:sim-model", base_url=url, api_key="sim-key",
                               mode="batch", poll_interval=0.05, progress=False)  # and once more, in this process
    assert again.attrs["llmframe"]["cached"] == ROWS and len(sim.batches.created) == 3
    assert sim.count == 0


def test_ctrl_c_while_waiting_leaves_the_jobs_running_and_reattachable(sim, cache_dir):
    settings = sim.batches.settings = BatchSettings(seconds=600.0)
    client = start("openai", sim.base_url, cache_dir)
    wait_for(lambda: all_submitted(cache_dir), client)
    client.send_signal(signal.SIGINT)
    try:
        out, _err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()  # never leave a hung client behind
    assert "INTERRUPTED" in out and client.returncode == 3
    assert all(b.state()[0] == "running" for b in sim.batches._batches.values())  # not cancelled
    settings.seconds = 0.05
    result = rerun("openai", sim.base_url, cache_dir)
    assert result["answers"] == [digest_answer(f"row {i}") for i in range(ROWS)]
    assert len(sim.batches.created) == 3
