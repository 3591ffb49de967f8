"""The answer journal (stores/journal.py): answers are safe once appended, committed later, replayed after a kill."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from llmframe.stores import journal as journals
from llmframe.stores.diskcache import Store, open_store, reset_cache

from .conftest import answers_read
from .test_resume import prompts_sent, rerun, signal_when

pytestmark = pytest.mark.skipif(not journals.SUPPORTED, reason="no file locks here: answers are committed instead")


def closed(journal: journals.Journal) -> None:
    """Let go of a journal's segment as a killed process does: the file stays, unlocked."""
    fd, _ = journal.rotate()
    os.close(fd)


def test_records_read_back_up_to_the_first_one_a_kill_cut_short_or_the_disk_damaged(tmp_path):
    journal = journals.Journal(tmp_path)
    items = [("a", "one é", False), ("b", b"\x00\xffvector", False), ("c", "three", True)]
    journal.append(items[:2])
    journal.append(items[2:])
    fd, path = journal.rotate()
    os.close(fd)
    data = path.read_bytes()
    assert list(journals.records(data)) == items
    assert list(journals.records(data[:-1])) == items[:2], "a record cut short ends the journal"
    damaged = bytearray(data)
    damaged[data.index(b"vector")] ^= 0xFF
    assert list(journals.records(bytes(damaged))) == items[:1], "a record that fails its checksum ends it"
    flags = bytearray(data)
    flags[journals._HEADER.size - 1] ^= journals._OVERWRITE  # the first record's flags: checked too
    assert list(journals.records(bytes(flags))) == []
    assert list(journals.records(data + bytes(4096))) == items, "zeros after the last record end the journal"
    assert journal.rotate() is None, "no answer since the last rotation: no segment"


def test_replay_moves_a_dead_process_s_answers_in_and_a_refresh_replaces_the_old_answer(cache_dir):
    store = Store(str(cache_dir))
    store.set_many([("kept", "old"), ("refreshed", "old")])
    journal = journals.Journal(cache_dir / journals.DIRECTORY)
    journal.append([("refreshed", "new", True), ("kept", "new", False), ("fresh", "new", False)])
    closed(journal)
    assert store.get_many(["fresh"]) == [None], "in the journal only, until it is replayed"
    assert store.recover() == 3
    assert store.get_many(["kept", "refreshed", "fresh"]) == ["old", "new", "new"]
    assert not list((cache_dir / journals.DIRECTORY).glob("*.log")), "a replayed segment is deleted"
    assert store.recover() == 0


def test_a_live_process_s_journal_is_left_to_it(cache_dir):
    store = Store(str(cache_dir))
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from pathlib import Path
            from llmframe.stores.journal import Journal
            journal = Journal(Path(sys.argv[1]))
            journal.append([("k", "v", False)])
            print("appended", flush=True)
            sys.stdin.readline()
        """), str(cache_dir / journals.DIRECTORY)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "appended"
        assert store.recover() == 0 and Store(str(cache_dir)).get_many(["k"]) == [None], "its writer is alive"
        assert len(list((cache_dir / journals.DIRECTORY).glob("*.log"))) == 1
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert Store(str(cache_dir)).get_many(["k"]) == ["v"], "once it is gone, the next opener replays it"


CLIENT = textwrap.dedent(
    """
    import sys
    from llmframe import constants
    # Nothing is committed before the kill: every answer kept is kept by the journal alone.
    constants.CACHE_JOURNAL_SECONDS = 3600.0
    constants.CACHE_JOURNAL_ROWS = 10**9
    constants.CACHE_BACKLOG_ROWS = 10**9
    import pandas as pd
    import llmframe

    rows, base_url, concurrency = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    df = pd.DataFrame({"x": [f"row {i}" for i in range(rows)]})
    df.llm.generate("{x}", model="openai:sim-model", base_url=base_url, api_key="sim-key",
                    max_concurrency=concurrency, progress=False)
    """
)


@pytest.mark.slow
def test_a_kill_before_any_commit_loses_no_answer_the_client_had_read(sim, cache_dir):
    import diskcache

    rows, in_flight = 600, 20
    sim.latency = 0.05
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(rows), sim.base_url, str(in_flight)],
                              env={**os.environ, "LLMFRAME_CACHE_DIR": str(cache_dir)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signal_when(client, signal.SIGKILL, lambda: sim.count >= 200)
    served = sim.count
    read = answers_read(sim)
    assert len(read) >= 200 - in_flight
    with diskcache.Cache(str(cache_dir)) as plain:  # diskcache itself: it replays nothing
        assert len(plain) == 0, "nothing was committed before the kill"
    assert list((cache_dir / journals.DIRECTORY).glob("*.log")), "the killed process left its journal"
    saved = len(Store(str(cache_dir)))  # opening the cache replays it
    assert len(read) <= saved <= served
    assert not list((cache_dir / journals.DIRECTORY).glob("*.log"))
    report = rerun(rows, sim)
    assert not read & prompts_sent(sim, served), "an answer the client had read was asked again"
    assert report["cached"] == saved and report["requests_sent"] == rows - saved
    assert sim.count - rows <= in_flight, "at most the requests in flight are asked twice"


def test_a_commit_that_fails_leaves_its_answers_in_the_journal_for_the_next_opener(gen, sim, cache_dir, monkeypatch):
    set_many = Store.set_many

    def failing(self, items, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "set_many", failing)
    with pytest.warns(RuntimeWarning, match="50 answers could not be written to the cache"):
        out = gen(pd.DataFrame({"x": [f"row {i}" for i in range(50)]}), "{x}")
    assert out["response"].notna().all(), "the run's answers are returned all the same"
    assert list((cache_dir / journals.DIRECTORY).glob("*.log")), "their segment is kept"
    monkeypatch.setattr(Store, "set_many", set_many)
    store = open_store(cache_dir)
    assert store.recover() == 50 and len(store) == 50
    sent = sim.count
    again = gen(pd.DataFrame({"x": [f"row {i}" for i in range(50)]}), "{x}")
    assert sim.count == sent and again["response"].tolist() == out["response"].tolist()


def test_a_journal_that_cannot_be_written_falls_back_to_committing_each_answer(gen, sim, cache_dir, monkeypatch):
    def full(self, items):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journals.Journal, "append", full)
    with pytest.warns(RuntimeWarning, match="journal") as said:
        out = gen(pd.DataFrame({"x": [f"row {i}" for i in range(120)]}), "{x}", max_concurrency=8)
    assert out["response"].notna().all()
    assert any("No space left on device" in str(w.message) for w in said)
    assert len(open_store(cache_dir)) == 120, "every answer was committed all the same"


def test_reset_cache_removes_the_journal_too(cache_dir):
    store = Store(str(cache_dir))
    store.set_many([("a", "1")])
    journal = journals.Journal(cache_dir / journals.DIRECTORY)
    journal.append([("b", "2", False)])
    closed(journal)
    reset_cache(cache_dir)
    assert not (cache_dir / journals.DIRECTORY).exists()
    assert Store(str(cache_dir)).get_many(["a", "b"]) == [None, None]


def test_prune_stats_and_copy_see_a_journal_left_after_the_cache_was_opened(cache_dir):
    import time

    from llmframe.plan.request import Response

    store = open_store(cache_dir)
    value = Response("answer", 1, 1, "stop").to_cache("openai:gone", time.time())
    journal = journals.Journal(cache_dir / journals.DIRECTORY)
    journal.append([("a", value, False), ("b", value, False)])
    closed(journal)  # a process killed after this one opened the cache
    assert store.stats()["models"]["openai:gone"]["entries"] == 2
    journal = journals.Journal(cache_dir / journals.DIRECTORY)
    journal.append([("c", value, False)])
    closed(journal)
    assert store.prune(model="openai:gone") == 3, "replayed first, so pruned too"
    assert store.recover() == 0 and len(store) == 0
    journal = journals.Journal(cache_dir / journals.DIRECTORY)
    journal.append([("d", value, False)])
    closed(journal)
    assert dict(store.entries()) == {"d": value}, "what `llmframe cache copy` reads includes it too"


def test_answers_that_did_not_reach_the_cache_are_not_kept_in_a_memo_either(gen, sim, cache_dir, monkeypatch):
    """Without a journal (Windows, PostgreSQL) a failed commit loses the cache's copy: the run memo must not become
    the only one (it is a copy of the per-row cache, pruned and cleared with it)."""
    set_many = Store.set_many

    def failing(self, items, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Store, "journal", lambda self: None)
    monkeypatch.setattr(Store, "set_many", failing)
    rows = pd.DataFrame({"x": [f"row {i}" for i in range(50)]})
    with pytest.warns(RuntimeWarning, match="50 answers could not be written to the cache"):
        gen(rows, "{x}")
    monkeypatch.setattr(Store, "set_many", set_many)
    sent = sim.count
    again = gen(rows, "{x}")
    assert sim.count == sent + 50 and again.attrs["llmframe"]["memo_rows"] == 0, "asked again, not read from a memo"
    sent = sim.count
    third = gen(rows, "{x}")
    assert sim.count == sent and third.attrs["llmframe"]["memo_rows"] == 50, "stored now: the memo serves the next run"


def test_an_answer_with_a_lone_surrogate_is_journaled_committed_and_read_back(cache_dir):
    """A reply's JSON may escape a lone surrogate ("\\ud800"), which no UTF-8 file or database holds as it is: the
    cached value escapes it, so the journal and SQLite take it and the answer reads back the same."""
    import time

    from llmframe.plan.request import Response

    answer = Response("odd \ud800 text, é kept", 3, 4, "stop", latency=0.1, transcript="tool \udfff said")
    value = answer.to_cache("openai:m", time.time())
    value.encode()  # valid UTF-8
    assert "é" in Response("é kept", 1, 1, "stop").to_cache("openai:m", 0.0), "without one, non-ASCII stays as it is"
    store = Store(str(cache_dir))
    journal = journals.Journal(cache_dir / journals.DIRECTORY)
    journal.append([("k", value, False)])
    closed(journal)
    assert store.recover() == 1
    stored = store.get_many(["k"])
    back = Response.many_from_cache(stored)[0]
    assert (back.text, back.input_tokens, back.output_tokens) == (answer.text, 3, 4)
    assert json.loads(stored[0])[9] == answer.transcript, "a tools run's transcript too"
