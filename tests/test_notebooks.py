"""Notebooks: the committed ones are executed and offline by default; the progress bar is a live widget with clear final states."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
TEXT_BAR = re.compile(r"\d+%\|")  # how a tqdm text bar starts: "40%|████"


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_there_are_notebooks():
    names = [path.name for path in NOTEBOOKS]
    assert "01_quickstart.ipynb" in names and "02_structured_extraction.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_the_simulator_switch(path):
    """The first code cell starts the simulator, with the one switch to real providers, documented above it."""
    nb = nbformat.read(path, as_version=4)
    first = code_cells(nb)[0].source
    assert re.search(r"^SIMULATE = True$", first, re.M), "the switch must be one line: SIMULATE = True"
    assert "notebook_setup(simulate=SIMULATE)" in first
    intro = "\n".join(cell.source for cell in nb.cells[: nb.cells.index(code_cells(nb)[0])])
    assert "SIMULATE = False" in intro and "API_KEY" in intro


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_its_outputs(path):
    """Committed executed, in order, without errors, so it renders on GitHub as it runs."""
    nb = nbformat.read(path, as_version=4)
    counts = [cell.execution_count for cell in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: run all cells, in order, then commit"
    outputs = [o for cell in code_cells(nb) for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    bars = [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
    assert bars, "a generate call shows its progress widget"
    for bar in bars:
        assert "(complete)" in bar["data"]["text/plain"], "the text fallback shows the bar's final state"
    assert nb.metadata["widgets"][WIDGET_STATE]["state"], "widget state saved, so the bars render"


# IPython's shell escapes (`!cmd`, %%bash, %sx): a command that fails there does not fail its cell, and one
# called by name needs the kernel's environment on PATH, which a kernel installed from a venv often lacks.
SHELL_ESCAPE = re.compile(r"^\s*(!|%%(bash|sh|script)\b|%(sx|system)\b)", re.M)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_run_commands_with_the_kernels_python_not_a_shell_escape(path):
    nb = nbformat.read(path, as_version=4)
    escapes = [line for cell in code_cells(nb) for line in cell.source.splitlines() if SHELL_ESCAPE.match(line)]
    assert not escapes, f"{path.name}: run commands as [sys.executable, '-m', ...] and check their exit status"


@pytest.mark.slow
def test_pipeline_notebook_runs_without_its_environment_on_path_and_a_failing_command_fails_its_cell(tmp_path):
    """A kernel from a virtual environment, started by a Jupyter elsewhere: the venv's bin folder is not on PATH."""
    nb = nbformat.read(next(p for p in NOTEBOOKS if p.name == "06_parquet_pipeline.ipynb"), as_version=4)
    nb.cells.append(new_code_cell('llmframe_command("run missing.parquet x.parquet -t {text} -m openai:m")'))
    scripts = Path(sys.executable).parent
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and Path(d) != scripts and not (Path(d) / "llmframe").exists()]
    env = {**os.environ, "PATH": os.pathsep.join(path or [os.defpath])}
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError) as failed:
        client.execute(env=env)
    assert failed.value.ename == "CalledProcessError", failed.value  # the last cell, and only it, failed
    outputs = [o for cell in code_cells(nb)[:-1] for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in code_cells(nb)[-1].outputs if o.output_type == "stream")
    assert "llmframe run: error:" in printed and "missing.parquet" in printed, printed


class RecordingClient(NotebookClient):
    """nbclient, keeping every widget update message the kernel sends (the live redraws)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.updates: dict[int, list[dict]] = {}

    def handle_comm_msg(self, outs, msg, cell_index):
        data = msg["content"].get("data", {})
        if data.get("method") == "update":
            self.updates.setdefault(cell_index, []).append(data.get("state", {}))
        return super().handle_comm_msg(outs, msg, cell_index)


SETUP = """
from llmframe.testing import notebook_setup, SimulatedError, tutorial_answer
import pandas as pd, llmframe

def answer(body):
    text = body["messages"][-1]["content"]
    if "FAIL" in text:
        raise SimulatedError(400, "refused")
    return tutorial_answer(body)

backend = notebook_setup(simulate=True, answer=answer)
"""

CELLS = {
    "complete": """
out = pd.DataFrame({"q": [f"question {i}" for i in range(60)]}).llm.generate(
    "{q}", model="openai:gpt-4o-mini", max_concurrency=3)
print("seconds", out.attrs["llmframe"]["seconds"])
""",
    "failures": """
out = pd.DataFrame({"q": ["ok 1", "FAIL 1", "ok 2", "FAIL 2", "ok 3"]}).llm.generate(
    "{q}", model="openai:gpt-4o-mini")
""",
    "all_failed": """
out = pd.DataFrame({"q": ["FAIL 3", "FAIL 4"]}).llm.generate("{q}", model="openai:gpt-4o-mini")
""",
    "stopped": """
from llmframe.errors import RunAborted
try:
    pd.DataFrame({"q": [f"FAIL {i}" for i in range(50)]}).llm.generate(
        "{q}", model="openai:gpt-4o-mini", max_concurrency=1, max_failures_in_a_row=3)
except RunAborted:
    print("aborted")
""",
    "interrupted": """
import os, signal, threading, time
backend.simulator.latency = 0.5
start = backend.simulator.count

def press_stop():  # what the stop button sends, once two rows are answered and two more in flight
    deadline = time.monotonic() + 60
    while backend.simulator.count < start + 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=press_stop, daemon=True).start()
try:
    pd.DataFrame({"q": [f"slow {i}" for i in range(40)]}).llm.generate(
        "{q}", model="openai:gpt-4o-mini", max_concurrency=2)
except KeyboardInterrupt:
    print("interrupted")
""",
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """One kernel runs a complete run, one with failed rows, one the breaker stops and one interrupted."""
    nb = new_notebook(cells=[new_code_cell(SETUP), *(new_code_cell(src) for src in CELLS.values())])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = RecordingClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                             resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
    client.execute()
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    cells = {name: nb.cells[i] for i, name in enumerate(CELLS, start=1)}
    updates = {name: client.updates.get(i, []) for i, name in enumerate(CELLS, start=1)}
    return cells, state, updates


def bar_of(cell, state):
    """(description, progress model state, counts text) of the one progress widget the cell displayed."""
    views = [o for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(views) == 1, "one widget per run: redraws update it, never append outputs"
    box = state[views[0]["data"][WIDGET_VIEW]["model_id"]]
    assert box["model_name"] == "HBoxModel"
    left, bar, right = (state[ref.removeprefix("IPY_MODEL_")] for ref in box["state"]["children"])
    assert bar["model_name"] == "FloatProgressModel"
    text = lambda model: model["state"]["value"].replace("\u2007", " ")  # noqa: E731  (tqdm pads with figure spaces)
    return text(left), bar["state"], text(right)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CELLS))
def test_progress_is_a_widget_not_a_text_bar(executed, name):
    cells, _, _ = executed
    cell = cells[name]
    assert any(WIDGET_VIEW in o.get("data", {}) for o in cell.outputs)
    streams = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    assert not TEXT_BAR.search(streams), f"a text bar was printed: {streams!r}"
    assert "IProgress not found" not in streams


@pytest.mark.slow
@pytest.mark.parametrize("name, rows, style, words, counts_shown", [
    ("complete", 60, "success", "(complete): 100%", ["60/60", "cached=0", "failed=0"]),
    ("failures", 5, "warning", "(complete, 2 failed): 100%", ["5/5", "failed=2"]),
])
def test_finished_run_is_green_or_amber_at_100_percent(executed, name, rows, style, words, counts_shown):
    cells, state, _ = executed
    desc, bar, counts = bar_of(cells[name], state)
    assert bar["value"] == bar["max"] == rows
    assert bar["bar_style"] == style
    assert desc.startswith(f"openai:gpt-4o-mini {words}"), desc
    assert all(part in counts for part in counts_shown), counts
    assert int(re.search(r"tokens=(\d+)", counts).group(1)) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name, printed, words", [
    ("stopped", "aborted", r"\(stopped, \d+ failed\)"),
    ("interrupted", "interrupted", r"\(interrupted at (\d+)/40\)"),
])
def test_run_ended_early_is_red_where_it_stopped(executed, name, printed, words):
    cells, state, _ = executed
    assert printed in "".join(o.get("text", "") for o in cells[name].outputs)
    desc, bar, _ = bar_of(cells[name], state)
    assert bar["bar_style"] == "danger"
    assert bar["value"] < bar["max"]
    found = re.search(words, desc)
    assert found, desc
    if found.groups():
        assert int(found.group(1)) == bar["value"]


@pytest.mark.slow
def test_run_where_every_row_failed_is_red_at_100_percent_with_the_first_error(executed):
    cells, state, _ = executed
    desc, bar, counts = bar_of(cells["all_failed"], state)
    assert bar["bar_style"] == "danger" and bar["value"] == bar["max"] == 2
    assert desc.startswith("openai:gpt-4o-mini (all 2 failed: HTTP 400"), desc
    assert "refused" in desc and "failed=2" in counts
    assert "RuntimeWarning" in "".join(o.get("text", "") for o in cells["all_failed"].outputs)


@pytest.mark.slow
def test_bar_updates_live_but_rate_limited(executed):
    """The 60-row run takes a second or more: the bar moves during it, at most a few redraws a second."""
    cells, _, updates = executed
    seconds = float(re.search(r"seconds ([\d.]+)", cells["complete"].outputs[-1]["text"]).group(1))
    values = [u["value"] for u in updates["complete"] if isinstance(u.get("value"), float)]
    assert values == sorted(values) and values[-1] == 60
    assert any(0 < v < 60 for v in values), f"no intermediate redraw: {values}"
    from llmframe import constants

    assert len(values) <= seconds / constants.PROGRESS_REFRESH_SECONDS + 4, f"{len(values)} redraws in {seconds} s"


@pytest.mark.parametrize("failed, state, words, colour", [
    (0, "done", "(complete): 100%", "\x1b[32m"),  # green
    (2, "done", "(complete, 2 failed): 100%", "\x1b[33m"),  # yellow
    (2, "stopped", "(stopped, 2 failed):", "\x1b[31m"),  # red
    (0, "interrupted", "(interrupted at 3/5):", "\x1b[31m"),
])
def test_terminal_bar_ends_in_its_final_state(capsys, failed, state, words, colour):
    from llmframe.engine.progress import Progress

    progress = Progress(5, show=True, description="openai:m")
    progress.advance(3 if state != "done" else 5 - failed, cached=True)
    progress.advance(failed, failed=True, tokens=40)
    progress.close(state)
    last = capsys.readouterr().err.split("\r")[-1]
    assert f"openai:m {words}" in last, last
    assert f"failed={failed}" in last and "tokens=40" in last and "cost" not in last
    assert colour in last


def test_bar_shows_cost_once_priced(capsys):
    from llmframe.engine.progress import Progress

    progress = Progress(2, show=True, description="m")
    progress.advance(1, tokens=1000, cost=0.0125)
    progress.advance(1, tokens=1000, cost=0.0125)
    progress.close("done")
    assert "tokens=2,000, cost=$0.0250" in capsys.readouterr().err


def test_report_renders_every_key_as_html():
    from llmframe.collect.report import Report

    report = Report(rows=1200, cached=200, requests_sent=990, failed=10, seconds=3.5,
                    finish_reasons={"stop": 1180, "length": 10}, errors=["HTTP 400: <refused> & more"],
                    cost_usd=0.01234, model="openai:gpt-4o-mini")
    page = report._repr_html_()
    assert "1,200 rows, 990 sent, 200 from cache, 10 failed, 3.50 s" in page
    assert "cost usd" in page and "0.01234" in page  # a key llmframe does not know yet is still shown
    assert "stop: 1180, length: 10" in page
    assert "&lt;refused&gt; &amp; more" in page and "<refused>" not in page
    assert json.loads(json.dumps(report)) == dict(report)  # still plain JSON


def test_report_in_attrs_stays_a_report_through_pandas(gen):
    import pandas as pd

    from llmframe.collect.report import Report

    out = gen(pd.DataFrame({"q": ["a", "b"]}), "{q}")
    report = out.attrs["llmframe"]
    assert isinstance(report, Report) and isinstance(report, dict)
    assert isinstance(out.head(1).attrs["llmframe"], Report)
    assert "<table>" in out.head(1).attrs["llmframe"]._repr_html_()


def test_notebook_setup_points_providers_at_the_simulator_and_restores(monkeypatch):
    import os

    import pandas as pd

    from llmframe.testing import notebook_setup

    monkeypatch.setenv("OPENAI_API_KEY", "the-users-real-key")
    backend = notebook_setup(simulate=True)
    try:
        assert os.environ["OPENAI_BASE_URL"] == backend.simulator.base_url
        assert os.environ["LLMFRAME_CACHE_DIR"] == backend.cache_dir
        out = pd.DataFrame({"review": ["Broke after two days."]}).llm.generate(
            "Sentiment of this review, one word:\n{review}", model="openai:gpt-4o-mini", output="s", progress=False)
        assert out["s"].tolist() == ["negative"] and backend.simulator.count == 1
        assert "the-users-real-key" not in repr(backend)
    finally:
        real = notebook_setup(simulate=False)
    assert os.environ["OPENAI_API_KEY"] == "the-users-real-key"
    assert "OPENAI_BASE_URL" not in os.environ
    assert "Real providers" in repr(real) and "OPENAI_API_KEY" in repr(real)
    assert not Path(backend.cache_dir).exists()
