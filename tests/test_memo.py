"""The run memo (issue 28): a repeated call answered from its last result, a chunk at a time, above the per-row cache."""

from __future__ import annotations

import warnings

import pandas as pd
import polars as pl
import pytest

import llmframe
from llmframe import constants
from llmframe.memo import files
from llmframe.testing import SimulatedError

from .conftest import MODEL

TEMPLATE = "Summarise {title}: {body}"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 4 rows, so that a 10-row frame has three (the last one short)."""
    monkeypatch.setattr(constants, "MEMO_CHUNK_ROWS", 4)


def frame(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"title": [f"t{i}" for i in range(n)], "body": [f"body {i}" for i in range(n)],
                         "other": list(range(n))})


def report(out) -> dict:
    return out.attrs["llmframe"]


def memo_files(cache_dir) -> list:
    return sorted((cache_dir / constants.MEMO_DIRECTORY).glob("*.arrow"))


def test_a_repeated_call_is_answered_from_the_memo_exactly(gen, sim):
    df = frame()
    first = gen(df, TEMPLATE)
    assert report(first)["memo_rows"] == 0 and report(first)["not_cached_because"] == \
        ["no earlier run of this call in this cache"]
    again = gen(df, TEMPLATE)
    pd.testing.assert_frame_equal(first, again)
    rep = report(again)
    assert sim.count == 10 and rep["memo_rows"] == 10 and rep["cached"] == 10 and rep["requests_sent"] == 0
    assert rep["rows"] == 10 and "not_cached_because" not in rep
    assert rep["finish_reasons"] == report(first)["finish_reasons"]


def test_a_changed_row_costs_its_chunk_and_sends_only_itself(gen, sim):
    df = frame()
    first = gen(df, TEMPLATE)
    changed = df.copy()
    changed.loc[5, "body"] = "a new body"
    out = gen(changed, TEMPLATE)
    rep = report(out)
    assert sim.count == 11 and rep["requests_sent"] == 1 and rep["cached"] == 9
    assert rep["memo_rows"] == 6  # chunks 0-3 and 8-9; rows 4-7 went through the per-row path
    assert rep["not_cached_because"] == ["rows: 1 new or changed rows"]
    assert out["response"].drop(index=5).tolist() == first["response"].drop(index=5).tolist()
    assert out["response"][5] != first["response"][5]
    assert report(gen(changed, TEMPLATE))["memo_rows"] == 10 and sim.count == 11


def test_appended_rows_are_the_only_ones_sent(gen, sim):
    gen(frame(8), TEMPLATE)
    out = gen(frame(10), TEMPLATE)
    rep = report(out)
    assert sim.count == 10 and rep["memo_rows"] == 8 and rep["requests_sent"] == 2
    assert out["response"].notna().all()


def test_columns_the_template_does_not_read_do_not_matter(gen, sim):
    df = frame()
    gen(df, TEMPLATE)
    df["other"] = df["other"] * 2
    assert report(gen(df, TEMPLATE))["memo_rows"] == 10 and sim.count == 10


@pytest.mark.parametrize("change, reason, sends", [
    ({"template": "Summarise {title}, {body}"}, "template changed", True),
    ({"temperature": 0.5}, "parameters changed", True),
    ({"model": "openai:other-model"}, "model changed (openai:sim-model -> openai:other-model)", True),
    ({"missing": "raise"}, "output options changed", False),  # the same requests: the per-row cache has them
])
def test_the_report_and_the_estimate_say_why_a_run_is_not_cached(gen, sim, change, reason, sends):
    df = frame()
    gen(df, TEMPLATE)
    template = change.pop("template", TEMPLATE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no price for the simulator's model
        est = df.llm.estimate(template, **{"model": MODEL, "base_url": sim.base_url, **change})
    if sends:
        assert est.not_cached_because == [reason] and f"not cached: {reason}" in repr(est)
    else:
        assert est.uncached_rows == 0 and est.not_cached_because is None
    out = gen(df, template, **change)
    assert report(out)["memo_rows"] == 0 and report(out)["not_cached_because"] == [reason]
    assert sim.count == (20 if sends else 10)


def test_the_estimate_counts_the_changed_rows(gen, sim):
    df = frame()
    gen(df, TEMPLATE)
    assert df.llm.estimate(TEMPLATE, model=MODEL, base_url=sim.base_url).not_cached_because is None
    df.loc[[1, 2], "title"] = "changed"
    est = df.llm.estimate(TEMPLATE, model=MODEL, base_url=sim.base_url)
    assert est.uncached_rows == 2 and est.not_cached_because == ["rows: 2 new or changed rows"]


def test_refresh_reads_no_memo_and_writes_the_new_answers(gen, sim):
    df = frame()
    gen(df, TEMPLATE)
    sim.answer = lambda body: "fresh"
    out = gen(df, TEMPLATE, cache="refresh")
    assert sim.count == 20 and report(out)["memo_rows"] == 0 and (out["response"] == "fresh").all()
    again = gen(df, TEMPLATE)
    assert sim.count == 20 and report(again)["memo_rows"] == 10 and (again["response"] == "fresh").all()


def test_cache_false_never_touches_the_memo(gen, sim, cache_dir):
    df = frame()
    gen(df, TEMPLATE, cache=False)
    gen(df, TEMPLATE, cache=False)
    assert sim.count == 20 and not (cache_dir / constants.MEMO_DIRECTORY).exists()


@pytest.mark.parametrize("clear", [lambda: llmframe.clear_cache(), lambda: llmframe.clear_cache(model=MODEL),
                                   lambda: llmframe.clear_cache(older_than=0)])
def test_clearing_or_pruning_the_cache_forgets_the_memo(gen, sim, cache_dir, clear):
    df = frame()
    gen(df, TEMPLATE)
    assert memo_files(cache_dir)
    clear()
    assert not memo_files(cache_dir)
    out = gen(df, TEMPLATE)
    assert report(out)["memo_rows"] == 0 and sim.count == 20


def test_failed_rows_are_never_memoized(gen, sim):
    df = frame()

    def answer(body):
        if body["messages"][-1]["content"].startswith("Summarise t6"):
            raise SimulatedError(400, "refused")
        return "fine"

    sim.answer = answer
    first = gen(df, TEMPLATE, max_attempts=1)
    assert report(first)["failed"] == 1
    sim.answer = lambda body: "fine"
    again = gen(df, TEMPLATE)
    rep = report(again)
    assert rep["memo_rows"] == 6 and rep["requests_sent"] == 1 and again["response_error"].isna().all()
    assert report(gen(df, TEMPLATE))["memo_rows"] == 10


def test_skipped_rows_are_counted_from_the_memo(gen, sim):
    df = frame()
    df.loc[2, "body"] = None
    first = gen(df, TEMPLATE)
    again = gen(df, TEMPLATE)
    pd.testing.assert_frame_equal(first, again)
    assert report(again)["skipped"] == report(first)["skipped"] == 1 and report(again)["cached"] == 9


def test_structured_outputs_come_back_the_same(gen, sim):
    from pydantic import BaseModel

    class Topic(BaseModel):
        topic: str
        score: int

    df = frame()
    first = gen(df, TEMPLATE, output=Topic)
    again = gen(df, TEMPLATE, output=Topic)
    pd.testing.assert_frame_equal(first, again)
    assert sim.count == 10


def test_polars_frames_and_series_use_the_memo(gen, sim):
    df = pl.DataFrame({"title": [f"t{i}" for i in range(10)], "body": [f"b{i}" for i in range(10)]})
    first = gen(df, TEMPLATE)
    again = gen(df, TEMPLATE)
    assert first.equals(again) and again.llm.report["memo_rows"] == 10 and sim.count == 10
    s = pd.Series([f"q{i}" for i in range(10)], name="q")
    one, two = gen(s, "{}"), gen(s, "{}")
    pd.testing.assert_series_equal(one, two)
    assert two.attrs["llmframe"]["memo_rows"] == 10


def test_the_memo_is_bounded(gen, sim, cache_dir, monkeypatch):
    monkeypatch.setattr(constants, "MEMO_MAX_CALLS", 2)
    for name in ("a", "b", "c"):
        gen(frame(), TEMPLATE, output=name)
    assert len(memo_files(cache_dir)) == 2


def test_a_memo_invalidated_meanwhile_is_not_written_back(tmp_path):
    import pyarrow as pa

    memo_dir = tmp_path / "memo"
    table = pa.table({"x": [1]})
    assert files.save(memo_dir, "call", table, {"chunks": ["f"]}, None)
    seen = files.epoch(memo_dir)
    files.invalidate(tmp_path)
    assert not files.save(memo_dir, "call", table, {"chunks": ["f"]}, seen)
    assert files.load(memo_dir, "call") is None


def test_usage_and_batch_calls_go_through_the_per_row_path(gen, sim):
    df = frame()
    gen(df, TEMPLATE, usage=True)
    out = gen(df, TEMPLATE, usage=True)
    assert "memo_rows" not in report(out) and report(out)["cached"] == 10 and sim.count == 10


def test_fingerprints_do_not_depend_on_how_a_column_is_split_into_arrow_chunks():
    import pyarrow as pa

    from llmframe.memo import fingerprint

    text = pa.array([f"row {i}" * (i % 3) for i in range(20)] + [None], pa.large_string())
    whole = fingerprint.chunks([fingerprint.chunked(text)], 21, 8, b"call")
    split = pa.chunked_array([text.slice(0, 5), text.slice(5, 11), text.slice(16)])
    assert fingerprint.chunks([split], 21, 8, b"call") == whole
    edited = pa.array(text.to_pylist()[:19] + ["other", None], pa.large_string())
    assert fingerprint.chunks([fingerprint.chunked(edited)], 21, 8, b"call")[:2] == whole[:2]
    assert fingerprint.chunks([fingerprint.chunked(edited)], 21, 8, b"call")[2] != whole[2]
    assert fingerprint.chunks([fingerprint.chunked(text)], 21, 8, b"other call") != whole


def test_a_memo_file_left_behind_by_an_invalidation_is_never_read(tmp_path):
    import pyarrow as pa

    memo_dir = tmp_path / "memo"
    assert files.save(memo_dir, "call", pa.table({"x": [1]}), {"chunks": ["f"]}, None)
    kept = (memo_dir / "call.arrow").read_bytes()
    files.invalidate(tmp_path)
    memo_dir.mkdir()
    (memo_dir / "call.arrow").write_bytes(kept)  # as if it could not be deleted
    assert files.save(memo_dir, "other", pa.table({"x": [2]}), {"chunks": ["g"]}, None)  # a new life
    assert files.load(memo_dir, "call") is None and files.load(memo_dir, "other") is not None


def test_a_first_estimate_has_nothing_to_compare_with(sim):
    est = frame().llm.estimate(TEMPLATE, model=MODEL, base_url=sim.base_url)
    assert est.uncached_rows == 10 and est.not_cached_because is None and "not cached" not in repr(est)


def test_answers_replaced_in_the_per_row_cache_invalidate_the_memo(gen, sim, cache_dir):
    from llmframe.stores.diskcache import open_store

    df = frame()
    gen(df, TEMPLATE)
    store = open_store(str(cache_dir))
    key, value = next(iter(store._entries()))
    store.set_many([(key, value)], overwrite=True)
    assert not memo_files(cache_dir)
    assert report(gen(df, TEMPLATE))["memo_rows"] == 0 and sim.count == 10


def test_two_frames_with_the_same_columns_each_keep_their_memo(gen, sim, cache_dir):
    """One call's memos are kept per first chunk, so alternating between two frames (or the chunks of a streamed
    file) answers both from the memo; a frame mixing chunks of both is answered from both."""
    one, two = frame(), frame()
    two["body"] = [f"other {i}" for i in range(10)]
    gen(one, TEMPLATE), gen(two, TEMPLATE)
    assert len(memo_files(cache_dir)) == 2
    a, b = gen(one, TEMPLATE), gen(two, TEMPLATE)
    assert report(a)["memo_rows"] == 10 and report(b)["memo_rows"] == 10 and sim.count == 20
    mixed = pd.concat([one[:4], two[4:8], one[8:]], ignore_index=True)  # chunks of 4: from one, two, one
    out = gen(mixed, TEMPLATE)
    assert report(out)["memo_rows"] == 10 and sim.count == 20
    assert out["response"].tolist() == [*a["response"][:4], *b["response"][4:8], *a["response"][8:]]


def test_the_bound_counts_calls_not_their_memos(gen, sim, cache_dir, monkeypatch):
    monkeypatch.setattr(constants, "MEMO_MAX_CALLS", 1)
    one, two = frame(), frame()
    two["body"] = [f"other {i}" for i in range(10)]
    gen(one, TEMPLATE), gen(two, TEMPLATE)
    assert len(memo_files(cache_dir)) == 2  # one call, two memos
    gen(one, TEMPLATE, output="summary")  # another call: the least recently used call's memos go
    assert [p.name.partition(".")[0] for p in memo_files(cache_dir)] == \
        [memo_files(cache_dir)[0].name.partition(".")[0]] and len(memo_files(cache_dir)) == 1


def test_clearing_the_cache_lets_go_of_the_memo_files_this_process_holds_open(gen, sim, cache_dir):
    df = frame()
    gen(df, TEMPLATE), gen(df, TEMPLATE)
    assert any(str(cache_dir) in path for path in files._opened)
    llmframe.clear_cache(str(cache_dir))
    assert not any(str(cache_dir) in path for path in files._opened)
    assert report(gen(df, TEMPLATE))["memo_rows"] == 0 and sim.count == 20
