"""Cache hygiene: stats, clearing by model and age, the size limit, and `llmframe cache` on the command line."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

import llmframe
from llmframe.stores.diskcache import Store, open_store, parse_duration
from llmframe.errors import ConfigError
from llmframe.plan.request import Response

from .conftest import MODEL

OTHER = "openai:other"


def frame(n: int, tag: str = "row") -> pd.DataFrame:
    return pd.DataFrame({"x": [f"{tag} {i}" for i in range(n)]})


@pytest.fixture
def two_models(gen, sim):
    """Real cached answers: 5 of MODEL, 3 of OTHER."""
    gen(frame(5), "{x}")
    gen(frame(3), "{x}", model=OTHER)
    assert sim.count == 8
    return sim


def old_entries(cache_dir, n: int, *, days: float, model: str = MODEL) -> None:
    created = time.time() - days * 86400
    items = [(f"old-{model}-{days}-{i}", Response(f"a{i}", 1, 1, "stop").to_cache(model, created=created)) for i in range(n)]
    open_store(cache_dir).set_many(items)


# Stats


def test_answers_from_one_server_are_not_served_for_another(gen, sim):
    from llmframe.testing.simulator import Simulator

    assert gen(frame(3), "{x}")["response"].notna().all()
    with Simulator() as other:  # same model string, another endpoint (a simulator here, the real API there)
        out = gen(frame(3), "{x}", base_url=other.base_url)
        assert out["response"].notna().all() and other.count == 3 and out.attrs["llmframe"]["cached"] == 0
    again = gen(frame(3), "{x}", base_url=sim.base_url + "/")  # the first server, spelled another way
    assert again.attrs["llmframe"]["cached"] == 3 and sim.count == 3


def test_stats_count_entries_per_model(two_models, cache_dir):
    before = time.time()
    stats = llmframe.cache_stats()
    assert stats["directory"] == str(cache_dir)
    assert stats["entries"] == 8 and stats["unknown"] == 0
    assert {name: m["entries"] for name, m in stats["models"].items()} == {MODEL: 5, OTHER: 3}
    for m in stats["models"].values():
        assert before - 60 <= m["oldest"] <= m["newest"] <= time.time()
    assert stats["oldest"] == min(m["oldest"] for m in stats["models"].values())
    assert stats["newest"] == max(m["newest"] for m in stats["models"].values())
    assert stats["size_bytes"] > 0
    assert stats["size_limit_bytes"] == llmframe.settings().cache_size_limit
    json.dumps(stats)  # plain JSON


def test_stats_of_a_missing_directory_create_nothing(tmp_path):
    where = tmp_path / "not-there"
    stats = llmframe.cache_stats(where)
    assert stats["entries"] == 0 and stats["models"] == {} and stats["oldest"] is None
    assert llmframe.clear_cache(where) == 0
    assert not where.exists()


def test_stats_use_the_configured_directory(gen, tmp_path, monkeypatch):
    monkeypatch.setattr(llmframe.config, "_current", llmframe.settings())
    llmframe.configure(cache_dir=tmp_path / "configured")
    gen(frame(2), "{x}")
    assert llmframe.cache_stats()["entries"] == 2
    assert llmframe.cache_stats()["directory"] == str(tmp_path / "configured")


def test_unreadable_values_are_unknown_and_kept_by_filtered_clears(two_models, cache_dir):
    open_store(cache_dir).set_many([("foreign", "not json"), ("older", '["text",1,2,"stop"]')])
    stats = llmframe.cache_stats()
    assert stats["unknown"] == 2 and stats["entries"] == 10
    assert llmframe.clear_cache(older_than=0) == 8
    assert llmframe.clear_cache(model=MODEL) == 0
    assert llmframe.cache_stats()["unknown"] == 2
    assert llmframe.clear_cache() == 2
    assert llmframe.cache_stats()["entries"] == 0


# Clearing by model


def test_clear_by_model_removes_only_that_model_and_a_rerun_resends_exactly_those(two_models, gen, cache_dir):
    sim = two_models
    assert llmframe.clear_cache(model=OTHER) == 3
    assert {name: m["entries"] for name, m in llmframe.cache_stats()["models"].items()} == {MODEL: 5}
    gen(frame(5), "{x}")
    assert sim.count == 8, "the other model's answers must stay cached"
    out = gen(frame(3), "{x}", model=OTHER)
    assert sim.count == 11 and out.attrs["llmframe"]["requests_sent"] == 3


def test_clear_by_unknown_model_removes_nothing(two_models):
    assert llmframe.clear_cache(model="openai:never-used") == 0
    assert llmframe.cache_stats()["entries"] == 8


# Clearing by age


def test_clear_older_than_zero_removes_all_and_a_large_age_none(two_models):
    assert llmframe.clear_cache(older_than="30d") == 0
    assert llmframe.clear_cache(older_than=dt.timedelta(hours=1)) == 0
    assert llmframe.cache_stats()["entries"] == 8
    assert llmframe.clear_cache(older_than=0) == 8
    assert llmframe.cache_stats()["entries"] == 0


def test_clear_by_age_removes_only_old_answers(two_models, cache_dir):
    old_entries(cache_dir, 4, days=3)
    old_entries(cache_dir, 2, days=10, model=OTHER)
    assert llmframe.cache_stats()["entries"] == 14
    assert llmframe.clear_cache(older_than="7d") == 2
    assert llmframe.clear_cache(older_than=2 * 86400, model=OTHER) == 0  # AND: OTHER has nothing that old left
    assert llmframe.clear_cache(older_than="2d") == 4
    stats = llmframe.cache_stats()
    assert {name: m["entries"] for name, m in stats["models"].items()} == {MODEL: 5, OTHER: 3}
    assert stats["oldest"] > time.time() - 3600


def test_clear_by_age_and_model_needs_both(cache_dir):
    old_entries(cache_dir, 3, days=5)
    old_entries(cache_dir, 2, days=5, model=OTHER)
    old_entries(cache_dir, 1, days=0)
    assert llmframe.clear_cache(older_than="1d", model=OTHER) == 2
    assert llmframe.clear_cache(older_than="1d") == 3
    assert llmframe.cache_stats()["entries"] == 1


def test_clear_in_many_batches(cache_dir):
    old_entries(cache_dir, 1203, days=2)
    old_entries(cache_dir, 7, days=0)
    assert llmframe.clear_cache(older_than="1d") == 1203
    assert len(open_store(cache_dir)) == 7


def test_clear_checks_its_arguments_before_removing_anything(two_models):
    for bad in ("soon", "-1d", "3x", -5, float("nan"), True, dt.timedelta(seconds=-1), [1]):
        with pytest.raises(ConfigError, match="older_than"):
            llmframe.clear_cache(older_than=bad)
    with pytest.raises(ConfigError, match="model"):
        llmframe.clear_cache(model="")
    assert llmframe.cache_stats()["entries"] == 8


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("90m", 5400), ("12h", 43200), ("30d", 30 * 86400), ("2w", 14 * 86400), ("1.5h", 5400),
     (" 7D ", 7 * 86400), ("3600", 3600), ("0", 0), (".5m", 30)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_durations_of_numbers_and_timedeltas():
    assert parse_duration(90) == 90.0 and parse_duration(0.5) == 0.5
    assert parse_duration(dt.timedelta(days=1, minutes=1)) == 86460.0


# The size limit


def test_size_limit_is_applied_and_kept_by_later_openers(cache_dir):
    store = open_store(cache_dir)
    assert store.size_limit == llmframe.settings().cache_size_limit
    assert open_store(cache_dir, size_limit=123_456) is store
    assert store.size_limit == 123_456 == store._cache.reset("size_limit")  # the stored setting too
    store.close()
    assert Store(str(cache_dir)).size_limit == 123_456, "opening without a limit keeps the stored one"
    assert Store(str(cache_dir), size_limit=999_999).size_limit == 999_999


def test_filling_past_the_size_limit_evicts_the_oldest(cache_dir):
    store = open_store(cache_dir, size_limit=200_000)
    text = "y" * 2000
    for batch in range(60):  # about 240 kB of answers in all, plus the database's own pages
        store.set_many([(f"k{batch}-{i}", Response(text, 1, 1, "stop").to_cache(MODEL, time.time()))
                        for i in range(2)])
    assert store.trim() > 0, "every run ends with a trim"
    stats = llmframe.cache_stats()
    assert stats["entries"] < 120, "nothing was evicted"
    assert stats["size_bytes"] <= 200_000 + 20_000
    assert store.get_many(["k59-1"]) != [None], "the newest answer must survive"
    assert store.get_many(["k0-0"]) == [None], "the oldest answer must go first"


def test_generate_applies_the_configured_size_limit(gen, cache_dir, monkeypatch):
    monkeypatch.setattr(llmframe.config, "_current", llmframe.settings())
    llmframe.configure(cache_size_limit=5 * 2**20)
    gen(frame(2), "{x}")
    assert open_store(cache_dir).size_limit == 5 * 2**20
    assert llmframe.cache_stats()["size_limit_bytes"] == 5 * 2**20


# The command line


def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, LLMFRAME_CACHE_DIR=os.environ["LLMFRAME_CACHE_DIR"])
    return subprocess.run([sys.executable, "-m", "llmframe", "cache", *args], capture_output=True, text=True,
                          input=input if input is not None else "", env=env, timeout=120)


def test_cli_stats_table_and_json(two_models, cache_dir):
    open_store(cache_dir).close()  # release this process's connections to the database
    out = cli("stats", "--cache-dir", str(cache_dir))
    assert out.returncode == 0, out.stderr
    assert str(cache_dir) in out.stdout
    assert "entries    8" in out.stdout and "16.0 GiB" in out.stdout
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    assert lines[MODEL][1] == "5" and lines[OTHER][1] == "3"
    assert dt.datetime.fromisoformat(lines[MODEL][2]).year >= 2024  # ISO dates

    out = cli("stats", "--cache-dir", str(cache_dir), "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["entries"] == 8 and stats["models"][OTHER]["entries"] == 3
    assert stats == llmframe.cache_stats(cache_dir)


def test_cli_clear_filtered_and_whole(two_models, cache_dir):
    out = cli("clear", "--cache-dir", str(cache_dir), "--model", OTHER)  # filtered: no --yes needed off a terminal
    assert out.returncode == 0, out.stderr
    assert "Removed 3 cached answers" in out.stdout
    out = cli("clear", "--cache-dir", str(cache_dir), "--older-than", "30d", "--model", MODEL)
    assert out.returncode == 0 and "Removed 0 cached answers" in out.stdout

    out = cli("clear", "--cache-dir", str(cache_dir))
    assert out.returncode == 2 and "--yes" in out.stderr
    assert llmframe.cache_stats(cache_dir)["entries"] == 5, "a refused clear removes nothing"

    out = cli("clear", "--cache-dir", str(cache_dir), "--yes")
    assert out.returncode == 0, out.stderr
    assert "Removed 5 cached answers" in out.stdout
    assert llmframe.cache_stats(cache_dir)["entries"] == 0


def test_cli_usage_errors_exit_2(two_models, cache_dir):
    out = cli("clear", "--older-than", "soon", "--yes")
    assert out.returncode == 2 and "--older-than 'soon'" in out.stderr
    out = cli("frobnicate")
    assert out.returncode == 2
    assert llmframe.cache_stats(cache_dir)["entries"] == 8


def test_cli_uses_the_environment_directory(two_models):
    out = cli("stats", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["entries"] == 8


class _Terminal:
    def __init__(self, answer: str):
        self.answer = answer

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        return self.answer + "\n"


@pytest.mark.parametrize("filters", [[], ["--model", OTHER]], ids=["whole", "filtered"])
def test_cli_asks_in_a_terminal(two_models, cache_dir, monkeypatch, capsys, filters):
    from llmframe.apps.cli import main

    monkeypatch.setattr(sys, "stdin", _Terminal("n"))
    assert main(["cache", "clear", *filters]) == 1
    assert "Nothing removed" in capsys.readouterr().out
    assert llmframe.cache_stats()["entries"] == 8

    monkeypatch.setattr(sys, "stdin", _Terminal("y"))
    assert main(["cache", "clear", *filters]) == 0
    assert llmframe.cache_stats()["entries"] == (0 if not filters else 5)


def test_bulk_lookup_matches_diskcache_get_for_small_and_large_values(cache_dir):
    store = open_store(cache_dir)
    small = Response("short", 1, 1, "stop").to_cache(MODEL, time.time())
    large = Response("z" * 100_000, 1, 1, "stop").to_cache(MODEL, time.time())  # stored in a file by diskcache
    store.set_many([("small", small), ("large", large)])
    assert store.get_many(["small", "missing"]) == [small, None]
    assert store.get_many(["large", "small", "missing"]) == [large, small, None]
    assert store.get_many([]) == []


def test_bulk_writes_read_back_through_diskcache_itself(cache_dir):
    import diskcache

    store = open_store(cache_dir)
    values = {f"k{i}": Response(f"answer {i} é", 1, 1, "stop").to_cache(MODEL, time.time()) for i in range(300)}
    values["big"] = Response("w" * 100_000, 1, 1, "stop").to_cache(MODEL, time.time())
    assert store.set_many(list(values.items())) == 0
    assert store.set_many([("k0", "other"), ("k299", "other"), ("new", "v")]) == 2, "present keys are counted"
    plain = diskcache.Cache(str(cache_dir))
    assert all(plain.get(k) == v for k, v in values.items()), "diskcache reads what the bulk insert wrote"
    assert plain.get("new") == "v" and len(plain) == 302
    assert plain.check() == [], "diskcache's own consistency check finds nothing wrong"


@pytest.mark.parametrize("journal", [False, True])
def test_a_slow_disk_holds_back_requests_instead_of_piling_answers_up(gen, sim, cache_dir, monkeypatch, journal):
    # The disk is made slow by delaying the real store's writes: a slow disk cannot be had on demand.
    from llmframe import constants
    from llmframe.engine.writer import CacheWriter

    written: list[int] = []
    backlogs: list[int] = []
    writers: list[CacheWriter] = []
    set_many, add = Store.set_many, CacheWriter.add
    if not journal:  # as on Windows: each answer is safe only once committed
        monkeypatch.setattr(Store, "journal", lambda self: None)
    limit = 40
    monkeypatch.setattr(constants, "CACHE_BACKLOG_ROWS", limit)

    def slow_set_many(self, items, **kwargs):
        if not written:  # the first write lasts until every worker waits on the disk, however fast the machine
            deadline = time.monotonic() + 30
            while writers[0].backlog < (limit if journal else 8) and time.monotonic() < deadline:
                time.sleep(0.005)
        time.sleep(0.02)
        written.append(len(items))
        return set_many(self, items, **kwargs)

    def watched_add(self, *args, **kwargs):
        writers[:] = [self]
        add(self, *args, **kwargs)
        backlogs.append(self.backlog)

    monkeypatch.setattr(Store, "set_many", slow_set_many)
    monkeypatch.setattr(CacheWriter, "add", watched_add)
    out = gen(frame(400), "{x}", max_concurrency=8)
    assert out["response"].notna().all() and sim.count == 400
    if journal:
        # Workers go on once an answer is in the journal; past the backlog limit the feeder sends nothing new, so
        # only what it had queued (two per worker) and the requests in flight are answered on top of it.
        assert limit <= max(backlogs) <= limit + 8 * (constants.QUEUE_SLACK + 1), "new requests wait for the disk"
        assert max(written) >= limit, "answers that piled up meanwhile go in one transaction"
    else:
        # A worker's next request waits until its answer is on disk: never more answers waiting than workers.
        assert max(backlogs) <= 8, "new requests wait while the disk is behind"
        # The first write lasted until all 8 workers waited on the disk: of those 8 answers, the first write took
        # some and the next one every other (one of them holds at least 4), each in one transaction.
        assert max(written) >= 4, "answers that piled up meanwhile go in one transaction"
    assert sum(written) == 400 and len(Store(str(cache_dir))) == 400
    assert not list((cache_dir / "journal").glob("*.log")), "every journal segment went once its answers were in"


def test_bulk_reads_return_values_kept_in_files_too(tmp_path):
    """An answer past diskcache's file threshold lives in a file beside the database: a chunk holding one is read
    through diskcache's own get, in order, with the short answers and the misses around it."""
    store = Store(str(tmp_path / "c"))
    long = "x" * (2 * store._cache.disk_min_file_size)
    assert store.set_many([("short", "a"), ("long", long), ("other", "b")]) == 0
    assert list((tmp_path / "c").rglob("*.val")), "the long value is in a file"
    assert store.get_many(["other", "missing", "long", "short"]) == ["b", None, long, "a"]
    assert store.get_many(["short", "missing"]) == ["a", None]


def test_the_writer_calls_a_write_slow_by_its_cpu_and_its_blocking_not_by_descheduling(tmp_path, monkeypatch):
    """Issue 28: a write the machine merely descheduled stays on the loop; one that blocked, or spent CPU, does not."""
    import asyncio
    import time

    from llmframe.engine import writer as writer_module
    from llmframe.stores.diskcache import open_store

    store = open_store(tmp_path / "c")
    waits = {"sleep": 0.0, "spin": 0.0}

    def set_many(items, *, overwrite=False):
        time.sleep(waits["sleep"])  # blocked: a voluntary context switch, as on a slow disk
        end = time.thread_time() + waits["spin"]
        while time.thread_time() < end:  # CPU spent writing
            pass
        return 0

    monkeypatch.setattr(store, "set_many", set_many)
    journal = {"on": False}
    real_journal = store.journal
    monkeypatch.setattr(store, "journal", lambda: real_journal() if journal["on"] else None)

    async def judge(sleep: float, spin: float, on_loop: bool) -> bool:
        waits.update(sleep=sleep, spin=spin)
        writer = writer_module.CacheWriter(store, model="m", overwrite=False)
        try:
            return writer._timed_write([("k", "v", False)], on_loop=on_loop)
        finally:
            writer.close()

    def run(*args) -> bool:
        return asyncio.run(judge(*args))

    assert run(0.0, 0.0, True) is True  # quick
    assert run(0.005, 0.0, True) is False  # blocked 5 ms on the loop
    assert run(0.0, 0.005, True) is False  # 5 ms of CPU
    assert run(0.005, 0.0, False) is True  # on the thread a short block is a wait for the GIL, not the disk
    assert run(0.05, 0.0, False) is False  # a disk this slow keeps the writes on the thread
    monkeypatch.setattr(writer_module, "_switches", lambda: 7)  # no block counted: descheduled, as on a busy machine
    assert run(0.005, 0.0, True) is True
    monkeypatch.undo()
    monkeypatch.setattr(store, "set_many", set_many)
    journal["on"] = True  # a journal's commits hold a few hundred rows: a tenth of its 0.2 s interval is quick
    monkeypatch.setattr(store, "journal", lambda: real_journal() if journal["on"] else None)
    assert run(0.005, 0.0, True) is True and run(0.0, 0.005, True) is True
    assert run(0.03, 0.0, True) is False and run(0.0, 0.03, True) is False


def test_a_writer_that_fails_outside_the_store_loses_only_the_cache_writes_never_the_run(gen, sim, cache_dir,
                                                                                            monkeypatch):
    """A failure in the writer beyond the store's own (here: reading the thread's counters) must not leave the
    workers waiting for a write that never comes: the run ends with every answer and says what was not cached."""
    import threading

    from llmframe.engine import writer as writer_module

    def broken() -> int:
        raise RuntimeError("the writer's own bookkeeping failed")

    monkeypatch.setattr(writer_module, "_switches", broken)
    got: dict = {}

    def call() -> None:
        with pytest.warns(RuntimeWarning, match="could not be written to the cache") as said:
            got["frame"] = gen(pd.DataFrame({"x": [f"row {i}" for i in range(300)]}), "{x}")
        got["said"] = [str(w.message) for w in said]

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=120)  # a deadline, not a timing: before the fix this run never ended
    assert not worker.is_alive(), "the run hung on a writer that had failed"
    assert got["frame"]["response"].notna().all() and len(got["frame"]) == 300
    assert any("the writer's own bookkeeping failed" in m for m in got["said"])
    monkeypatch.undo()
    sent = sim.count
    again = gen(pd.DataFrame({"x": [f"row {i}" for i in range(300)]}), "{x}")
    assert sim.count == sent + 300 and again["response"].notna().all(), "nothing was cached, so all are asked again"
