"""Background runs: df.llm.submit(..., mode="online") returns at once; status, partial results, cancel, jobs()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import llmframe
from llmframe import constants
from llmframe.engine.background import OnlineJob
from llmframe.errors import TemplateError
from llmframe.stores.diskcache import Store
from llmframe.testing import digest_answer

from .conftest import MODEL, answers_read, ctrl_c_when

COUNTS = ("done", "cached", "failed", "tokens")
PRICES = {MODEL: {"input_mtok": 1.0, "output_mtok": 2.0}}


def frame(n: int, tag: str = "row") -> pd.DataFrame:
    # A shuffled, non-default index: alignment is by label, never by position.
    labels = np.random.default_rng(7).permutation(n) * 3 + 11
    return pd.DataFrame({"q": [f"{tag} {i}" for i in range(n)]}, index=pd.Index(labels, name="id"))


@pytest.fixture
def submit(sim):
    """Call df.llm.submit(mode="online") against the simulator, without a progress bar."""
    started: list[OnlineJob] = []

    def call(df, template="{q}", **kwargs):
        kwargs.setdefault("model", MODEL)
        kwargs.setdefault("base_url", sim.base_url)
        kwargs.setdefault("api_key", sim.api_key)
        kwargs.setdefault("progress", False)
        kwargs.setdefault("mode", "online")
        job = df.llm.submit(template, **kwargs)
        started.append(job)
        return job

    yield call
    for job in started:  # a failed test leaves no run going into the next one
        job.cancel()


def wait_until(condition, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def test_a_background_run_leaves_the_main_thread_free_and_its_counts_only_grow(submit, sim):
    rows = 3000
    sim.latency = 0.01  # 16 at a time: a couple of seconds at least, longer on a busy machine
    df = frame(rows)
    job = submit(df, max_concurrency=16)
    assert isinstance(job, OnlineJob) and job.running
    # The main thread keeps working while the job runs: it does its own work and looks at the job.
    statuses, work, longest_gap, last = [], 0, 0.0, time.monotonic()
    deadline = time.monotonic() + 120
    while job.running and time.monotonic() < deadline:
        work += sum(range(2000))  # the main thread's own work, and a moment off the CPU, as a person's code has
        time.sleep(0.001)
        statuses.append(job.status())
        now = time.monotonic()
        longest_gap, last = max(longest_gap, now - last), now
    assert not job.running, "the job ends by itself"
    looked = [s for s in statuses if s["state"] == "running"]
    middle = [s for s in looked if 0 < s["done"] < rows]
    assert len(middle) >= 10, f"the main thread saw the job under way only {len(middle)} times"
    assert len({s["done"] for s in middle}) >= 3, "the job moved on while the main thread worked"
    # A blocked main thread would show one gap as long as the run; a few seconds allow for a loaded machine.
    assert longest_gap < 5.0, f"the main thread stalled for {longest_gap:.2f} s"
    for name in COUNTS:
        values = [s[name] for s in statuses]
        assert values == sorted(values), f"{name} went down"
    final = job.status()
    assert final["state"] == "done" and final["done"] == rows and final["pending"] == 0
    assert final["seconds_left"] == 0.0 and final["tokens"] > 0 and final["rows_per_second"] > 0
    assert any(s["seconds_left"] for s in middle), "time left is estimated while it runs"
    out = job.result()
    assert out.index.equals(df.index)
    assert out["response"].tolist() == [digest_answer(q) for q in df["q"]]
    assert out["response_error"].isna().all() and out.attrs["llmframe"]["requests_sent"] == rows


def test_partial_results_are_aligned_and_mark_the_rest_pending(submit, sim, gen):
    rows = 400
    sim.latency = 0.05
    df = frame(rows)
    df.loc[df.index[::7], "q"] = "the same question"  # duplicates fan out to their rows, partial or not
    job = submit(df, max_concurrency=4, usage=True, prices=PRICES)
    wait_until(lambda: job.status()["done"] >= 20)
    part = job.result(partial=True)
    assert job.running, "a partial result does not wait"
    assert part.index.equals(df.index) and part["q"].equals(df["q"])
    answered = part["response"].notna()
    assert 20 <= answered.sum() < rows
    assert (part.loc[answered, "response"] == part.loc[answered, "q"].map(digest_answer)).all()
    assert part.loc[answered, "response_error"].isna().all()
    assert (part.loc[~answered, "response_error"] == constants.JOB_PENDING).all()
    report = part.attrs["llmframe"]
    assert report["pending"] == (~answered).sum() and report["failed"] == 0
    assert 0 < report["cost"] <= job.status()["cost"] + 1e-6, "the job's cost so far, priced as it goes"
    # Tokens are the distinct requests' (a duplicate is asked once): only the answered ones count so far.
    assert report["input_tokens"] == part[answered].drop_duplicates("q")["response_input_tokens"].sum() > 0
    final = job.result()
    assert "pending" not in final.attrs["llmframe"]
    sim.latency = 0.0
    assert final.drop(columns="response_latency_s").equals(gen(df, "{q}", usage=True, prices=PRICES).drop(
        columns="response_latency_s").assign(response_cached=final["response_cached"]))


def test_cancel_stops_within_the_interrupt_bound_and_every_finished_answer_is_cached(submit, sim, gen, cache_dir):
    rows = 2000
    sim.latency = 0.2
    df = frame(rows)
    job = submit(df, max_concurrency=8)
    wait_until(lambda: sim.count >= 40)
    sim.latency = 120.0  # from now on a request takes minutes: waiting for those in flight cannot be in time
    began = time.monotonic()
    job.cancel()
    took = time.monotonic() - began
    assert not job.running and job.state == "cancelled"
    assert took < constants.CANCEL_GRACE_SECONDS + 1.0, f"cancel took {took:.2f} s"
    served = sim.count
    out = job.result()  # what finished, the rest marked: no waiting, no error
    answered = out["response"].notna()
    assert 0 < answered.sum() < rows
    assert (out.loc[~answered, "response_error"] == constants.JOB_CANCELLED).all()
    assert len(Store(str(cache_dir))) == answered.sum(), "every finished answer is in the cache"
    read = answers_read(sim)
    assert len(read) >= 40 - 8
    assert set(out.loc[answered, "q"]) >= read, "an answer the client had read was not kept"
    sim.latency = 0.0
    again = gen(df, "{q}")  # a re-run (as after a kernel restart) resumes from the cache
    assert again.attrs["llmframe"]["cached"] == answered.sum()
    assert sim.count - served == rows - answered.sum()
    assert again["response"].tolist() == [digest_answer(q) for q in df["q"]]


def test_resubmitting_after_a_lost_job_resumes_from_the_cache(submit, sim):
    df = frame(300)
    sim.latency = 0.05
    first = submit(df, max_concurrency=4)
    wait_until(lambda: first.status()["done"] >= 30)
    first.cancel()  # what a kernel restart does to the job; its answers are on disk
    kept = first.status()["done"]
    sim.latency = 0.0
    second = submit(df, max_concurrency=4)
    out = second.result()
    assert out.attrs["llmframe"]["cached"] == kept and out.attrs["llmframe"]["requests_sent"] == 300 - kept
    assert second.status()["cached"] == kept


def test_ctrl_c_stops_waiting_not_the_job(submit, sim):
    sim.latency = 0.05
    job = submit(frame(200), max_concurrency=4)
    ctrl_c_when(lambda: job.status()["done"] >= 10)
    with pytest.raises(KeyboardInterrupt):
        job.wait()
    assert job.running, "the job goes on after the wait is interrupted"
    done_then = job.status()["done"]
    sim.latency = 0.0
    assert job.wait(timeout=120).status()["state"] == "done"
    assert job.status()["done"] == 200 > done_then


def test_two_background_runs_share_one_rate_limit(submit, sim, gen):
    rpm, each = 2400, 100  # 40 a second and a burst of 40 (RATE_BURST_SECONDS), shared by both runs
    gen(frame(1, "warm-up"), "{q}")  # the SDK imported and the loop started: submit itself is quick below
    began = time.monotonic()  # no bucket exists before: its refill is bounded from here (the log's clock)
    a = submit(frame(each, "a"), rpm=rpm, max_concurrency=8)
    b = submit(frame(each, "b"), rpm=rpm, max_concurrency=8)
    for job in (a, b):
        assert job.wait(timeout=120).status()["state"] == "done"
    times = sorted(entry.time for entry in sim.requests if not entry.body["messages"][-1]["content"].startswith("w"))
    assert len(times) == 2 * each
    span = times[-1] - began
    burst = rpm / 60 * constants.RATE_BURST_SECONDS
    # One bucket for both: at most the burst plus the rate since it was made (two buckets could send twice that).
    assert len(times) <= burst + rpm / 60 * span + 2, f"{len(times)} requests in {span:.2f} s"
    first_b = min(e.time for e in sim.requests if e.body["messages"][-1]["content"].startswith("b "))
    last_a = max(e.time for e in sim.requests if e.body["messages"][-1]["content"].startswith("a "))
    assert first_b < last_a, "the two runs ran at the same time"


def test_jobs_lists_running_and_finished_jobs(submit, sim):
    sim.latency = 0.05
    finished = submit(frame(5, "f"))
    finished.wait(timeout=60)
    running = submit(frame(500, "r"), max_concurrency=2)
    listed = llmframe.jobs()
    assert listed.index(finished) < listed.index(running)
    assert not finished.running and running.running
    assert "state='running'" in repr(running) and "state='done'" in repr(finished)
    running.cancel()
    assert running in llmframe.jobs() and running.status()["state"] == "cancelled"


def test_bad_input_raises_before_anything_is_sent(submit, sim):
    with pytest.raises(TemplateError, match="nope"):
        submit(frame(5), "{nope}")
    assert sim.count == 0


def test_the_job_runs_on_the_rows_as_they_were_submitted(submit, sim):
    sim.latency = 0.05
    df = frame(100)
    job = submit(df, max_concurrency=2)
    df["q"] = "changed"  # the notebook goes on editing its frame
    df.loc[df.index[-1], "q"] = "changed again"
    out = job.result()
    assert out["q"].tolist() == [f"row {i}" for i in range(100)]
    assert out["response"].tolist() == [digest_answer(f"row {i}") for i in range(100)]


def test_a_job_the_breaker_stops_raises_its_error_and_keeps_its_partial_result(submit, sim):
    from llmframe.errors import RunAborted
    from llmframe.testing import SimulatedError

    def answer(body):
        text = body["messages"][-1]["content"]
        if int(text.split()[1]) >= 5:
            raise SimulatedError(400, "refused")
        return digest_answer(text)

    sim.answer = answer
    df = pd.DataFrame({"q": [f"row {i}" for i in range(100)]})
    job = submit(df, max_concurrency=1, max_failures_in_a_row=3)
    with pytest.raises(RunAborted):
        job.result()
    assert job.status()["state"] == "failed" and "RunAborted" in job.status()["error"]
    with pytest.warns(RuntimeWarning, match="95 of 100 rows failed"):  # the run ended: nothing is pending
        part = job.result(partial=True)
    assert (part["response_error"].iloc[8:] == constants.NOT_ANSWERED).all()
    assert part["response"].head(5).tolist() == [digest_answer(f"row {i}") for i in range(5)]
    assert part["response"].iloc[5:].isna().all()


def test_a_local_model_runs_in_the_background(llm_tiny_model, cache_dir):
    pytest.importorskip("torch", reason="needs the transformers extra")
    model = f"transformers:{llm_tiny_model}"
    df = pd.DataFrame({"q": [f"review {i}: " + "good fox " * (i % 3) for i in range(12)]},
                      index=pd.RangeIndex(50, 62))
    llmframe.unload()
    try:
        job = df.llm.submit("{q}", model=model, mode="online", max_tokens=8, progress=False)
        out = job.result()
        assert job.status()["state"] == "done" and out.index.equals(df.index)
        assert out["response"].notna().all()  # max_tokens=8 cuts them short: noted in the error column
        again = df.llm.generate("{q}", model=model, max_tokens=8, progress=False)
        assert again.attrs["llmframe"]["cached"] == 12
        assert again[["response", "response_error"]].equals(out[["response", "response_error"]])
    finally:
        llmframe.unload()


NOTEBOOK_CELLS = [
    """
from llmframe.testing import notebook_setup
import time, pandas as pd, llmframe
backend = notebook_setup(simulate=True)
backend.simulator.latency = 0.02
""",
    """
job = pd.DataFrame({"q": [f"question {i}" for i in range(300)]}).llm.submit(
    "{q}", model="openai:gpt-4o-mini", mode="online", max_concurrency=2)
print("submitted", job.running)
""",
    """
n, seen, deadline = 0, set(), time.monotonic() + 120
while job.running and time.monotonic() < deadline:  # another cell's work, while the job runs
    n += sum(range(1000)) > 0
    seen.add(job.status()["done"])
    time.sleep(0.005)
print("other work", n, len(seen), job.status()["state"])
""",
    """
out = job.result()
print("rows", out["response"].notna().sum(), [j.state for j in llmframe.jobs()])
""",
]


@pytest.mark.slow
def test_in_a_notebook_the_jobs_widget_lives_in_its_cell_and_updates_while_other_cells_run(tmp_path):
    import importlib.util

    from nbformat.v4 import new_code_cell, new_notebook

    # notebooks/execute.py's client: it applies a widget's updates whichever cell sends them, as JupyterLab does.
    spec = importlib.util.spec_from_file_location("execute", Path(__file__).parents[1] / "notebooks" / "execute.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)

    class Frontend(execute.Client):
        """Also records each update: the cell running when it came, the widget model, the new state."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.updates: list[tuple[int, str, dict]] = []

        def handle_comm_msg(self, outs, msg, cell_index):
            data = msg["content"].get("data", {})
            if data.get("method") == "update":
                self.updates.append((cell_index, msg["content"]["comm_id"], data.get("state", {})))
            return super().handle_comm_msg(outs, msg, cell_index)

    nb = new_notebook(cells=[new_code_cell(src) for src in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = Frontend(nb, timeout=180, kernel_name="python3", store_widget_state=True,
                      resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = lambda i: "".join(o.get("text", "") for o in nb.cells[i].outputs if o.output_type == "stream")  # noqa: E731
    assert "submitted True" in text(1)
    other = text(2).split()
    assert other[:1] == ["other"] and int(other[2]) > 50 and int(other[3]) >= 3 and other[4] == "done", text(2)
    assert "rows 300" in text(3) and "'done'" in text(3)
    views = [o for o in nb.cells[1].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1, "the job's bar is in the cell that submitted it"
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for cell in nb.cells[2:] for o in cell.outputs)
    box = client.widget_state[views[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]]
    bar_id = box["children"][1].removeprefix("IPY_MODEL_")
    during_other_cell = [u["value"] for i, comm, u in client.updates if comm == bar_id and i == 2 and "value" in u]
    assert len(during_other_cell) >= 2 and any(0 < v < 300 for v in during_other_cell), during_other_cell
    assert during_other_cell == sorted(during_other_cell)
    bar = client.widget_state[bar_id]
    assert bar["value"] == 300 and bar["bar_style"] == "success"


CHILD = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    import llmframe

    rows, base_url, then = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    df = pd.DataFrame({"q": [f"row {i}" for i in range(rows)]})
    job = df.llm.submit("{q}", model="openai:sim-model", base_url=base_url, api_key="sim-key", mode="online",
                        max_concurrency=8, progress=False)
    print("SUBMITTED", flush=True)
    deadline = time.monotonic() + 120
    while job.status()["done"] < 100 and time.monotonic() < deadline:  # the notebook's other work
        time.sleep(0.01)
    if then == "work":
        while time.monotonic() < deadline:
            time.sleep(0.01)
    print("EXITING", flush=True)  # the script ends with its job still running
    """
)


def start_child(rows: int, sim, then: str, cache_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(rows), sim.base_url, then],
                            env={**os.environ, "LLMFRAME_CACHE_DIR": str(cache_dir)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def resubmitted(rows: int, submit) -> dict:
    out = submit(pd.DataFrame({"q": [f"row {i}" for i in range(rows)]}), model="openai:sim-model").result()
    assert out["response"].tolist() == [digest_answer(f"row {i}") for i in range(rows)]
    return out.attrs["llmframe"]


@pytest.mark.slow
def test_a_kernel_restart_loses_the_job_not_its_answers(submit, sim, cache_dir):
    rows = 3000
    sim.latency = 0.05
    child = start_child(rows, sim, "work", cache_dir)
    try:
        wait_until(lambda: sim.count > 0 and time.monotonic() - sim.requests[0].time > 4 or child.poll() is not None)
        assert child.poll() is None, child.communicate()
        child.kill()  # what a kernel restart does: no clean-up at all
        killed = time.monotonic()
        child.communicate(timeout=60)
    finally:
        child.kill()
    served, saved = sim.count, len(Store(str(cache_dir)))
    assert 0 < saved <= served < rows
    long_read = answers_read(sim, by=killed - 3)  # answers read seconds before the kill reached the disk
    assert len(long_read) >= 8
    sim.latency = 0.0
    report = resubmitted(rows, submit)  # re-running the same submit resumes from the cache
    assert report["cached"] == saved and report["requests_sent"] == rows - saved
    assert not long_read & {e.body["messages"][-1]["content"] for e in sim.requests[served:]}


@pytest.mark.slow
def test_a_script_that_ends_with_a_job_running_cancels_it_and_keeps_every_answer(submit, sim, cache_dir):
    rows = 3000
    sim.latency = 0.05
    child = start_child(rows, sim, "exit", cache_dir)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0 and "EXITING" in out, err
    assert "was still running at exit: cancelled" in err, err
    served, saved = sim.count, len(Store(str(cache_dir)))
    assert 100 <= saved < rows
    read = answers_read(sim)  # every answer the child read, to the last one: the cancel wrote them all
    sim.latency = 0.0
    report = resubmitted(rows, submit)
    assert report["cached"] == saved and report["requests_sent"] == rows - saved
    assert not read & {e.body["messages"][-1]["content"] for e in sim.requests[served:]}


def test_in_a_terminal_no_bar_draws_over_the_prompt_until_wait(submit, sim, capsys, monkeypatch):
    from llmframe.engine import background

    monkeypatch.setattr(background, "should_show", lambda progress: True)  # stderr as a terminal (pytest's is not)
    sim.latency = 0.02
    job = submit(frame(100), progress=None, max_concurrency=2)
    wait_until(lambda: job.status()["done"] >= 10)
    assert capsys.readouterr().err == "", "a background run draws nothing by itself"
    job.wait()
    drawn = capsys.readouterr().err.split("\r")
    assert "(complete): 100%" in drawn[-1] and "100/100" in drawn[-1], drawn[-1]
    assert any("/100" in part and "100/100" not in part for part in drawn), "wait()'s bar moved while it waited"
