"""`llmframe run` with max_cost: one budget for the whole run, which every chunk reserves from and settles into."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from llmframe.apps import stream
from llmframe.errors import BudgetExceeded

from .conftest import MODEL

PRICES = {MODEL: {"input_mtok": 100_000, "output_mtok": 100_000}}  # 10 cents a token: a few requests a dollar


def options(sim, **more) -> dict:
    return dict(base_url=sim.base_url, api_key=sim.api_key, prices=PRICES, max_tokens=5, max_concurrency=1,
                progress=False, **more)


def job(sim, tmp_path, rows: pd.DataFrame, batch_rows: int, **more) -> stream.Job:
    rows.to_parquet(tmp_path / "in.parquet")
    return stream.Job(source=tmp_path / "in.parquet", dest=tmp_path / "out.parquet", template="{x}", model=MODEL,
                      options=options(sim, **more), batch_rows=batch_rows, quiet=True)


def sent(sim) -> list[str]:
    return [entry.body["messages"][-1]["content"] for entry in sim.requests]


def test_a_file_run_stops_where_the_same_rows_in_one_frame_stop(sim, tmp_path, monkeypatch):
    rows = pd.DataFrame({"x": [f"row {i}" for i in range(20)]})
    monkeypatch.setenv("LLMFRAME_CACHE_DIR", str(tmp_path / "frame-cache"))
    with pytest.raises(BudgetExceeded) as one_frame:
        rows.llm.generate("{x}", model=MODEL, **options(sim, max_cost=3))
    by_frame, frame_report = sent(sim), one_frame.value.report
    assert 0 < len(by_frame) < 20

    sim.reset()
    monkeypatch.setenv("LLMFRAME_CACHE_DIR", str(tmp_path / "file-cache"))
    with pytest.raises(BudgetExceeded, match=r"max_cost=3 reached after \d+ rows") as file_run:
        stream.run(job(sim, tmp_path, rows, batch_rows=3, max_cost=3))  # the cap falls inside a chunk of 3
    assert sent(sim) == by_frame  # the same requests, in the same order, and not one more
    report = file_run.value.report
    assert report["requests_sent"] == frame_report["requests_sent"]
    assert report["cost"] == pytest.approx(frame_report["cost"])
    # The run's budget, once: not a sum of every chunk's view of it.
    assert report["budget"]["max_cost"] == 3 and report["budget"]["stopped"]
    assert report["budget"]["spent"] == pytest.approx(frame_report["budget"]["spent"])
    assert report["budget"]["spent"] == pytest.approx(report["cost"]) and report["cost"] <= 3
    assert not (tmp_path / "out.parquet").exists()


def test_what_an_early_chunk_leaves_unspent_is_there_for_the_later_chunks(sim, tmp_path):
    rows = pd.DataFrame({"x": [f"row {i}" for i in range(12)]})
    rows.iloc[:8].llm.generate("{x}", model=MODEL, **options(sim))  # the first two chunks are cached: they spend 0
    sim.reset()
    # A cap that holds the last chunk's four requests at their estimate (what each reserves), and no more: with a
    # third of it per chunk, the last chunk could not send them all.
    cap = rows.iloc[8:].llm.estimate("{x}", model=MODEL, **options(sim)).cost[1]
    outcome = stream.run(job(sim, tmp_path, rows, batch_rows=4, max_cost=cap))
    assert sent(sim) == [f"row {i}" for i in range(8, 12)]
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["response"].notna().all()
    assert outcome.report["cached"] == 8 and outcome.report["requests_sent"] == 4
    budget = outcome.report["budget"]
    assert budget == {"max_cost": cap, "spent": pytest.approx(outcome.report["cost"]), "stopped": False,
                      "rows_not_sent": 0}
    assert 0 < outcome.report["cost"] <= cap
    provenance = pq.read_schema(tmp_path / "out.parquet").metadata[b"llmframe"]
    assert b'"max_cost"' in provenance


def test_batch_chunks_are_checked_against_what_the_earlier_ones_left(sim, tmp_path):
    from llmframe.testing import BatchSettings

    sim.batches.settings = BatchSettings(seconds=0.1)
    rows = pd.DataFrame({"x": [f"row {i}" for i in range(9)]})
    more = dict(mode="batch", poll_interval=0.02)
    chunk = rows.iloc[:3].llm.estimate("{x}", model=MODEL, **options(sim), mode="batch").cost
    # Each chunk's job fits the cap alone, and the second fits what the first left; the third does not, as the
    # first two were billed more than one job's high estimate (asserted below).
    cap = 2 * chunk[1]
    with pytest.raises(BudgetExceeded, match="over what is left of max_cost") as stopped:
        stream.run(job(sim, tmp_path, rows, batch_rows=3, max_cost=cap, **more))
    assert len(sim.batches.created) == 2 and sim.count == 0
    budget = stopped.value.report["budget"]
    assert budget["max_cost"] == cap and budget["spent"] == pytest.approx(stopped.value.report["cost"])
    assert chunk[1] < budget["spent"] <= cap and stopped.value.report["requests_sent"] == 6
    assert not (tmp_path / "out.parquet").exists()
