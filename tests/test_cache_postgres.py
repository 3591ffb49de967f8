"""The shared answer cache on a real PostgreSQL server: same keys and records as diskcache, same guarantees."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pandas as pd
import pytest

import llmframe
from llmframe.cacheurl import CacheURL
from llmframe.errors import CacheError, ConfigError
from llmframe.plan.request import Response
from llmframe.stores.diskcache import open_store
from llmframe.stores.postgresql import open_postgres
from llmframe.testing import SimulatedError, digest_answer

from .conftest import MODEL
from .pg import pg_cluster, pg_url  # noqa: F401  (fixtures)


def frame(n: int, tag: str = "row") -> pd.DataFrame:
    return pd.DataFrame({"x": [f"{tag} {i}" for i in range(n)]})


def store_at(url: str):
    return open_postgres(CacheURL(url))


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmframe", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})})


def test_a_run_writes_to_and_reads_from_the_shared_store(gen, sim, pg_url):
    out = gen(frame(30), "{x}", cache=pg_url)
    assert sim.count == 30 and out["response"].tolist() == [digest_answer(f"row {i}") for i in range(30)]
    assert len(store_at(pg_url)) == 30
    again = gen(frame(30), "{x}", cache=pg_url)
    assert sim.count == 30, "every answer comes from the shared store"
    assert again.attrs["llmframe"]["cached"] == 30 and again["response"].equals(out["response"])


def test_the_same_keys_and_records_as_diskcache(gen, sim, pg_url, cache_dir):
    gen(frame(20), "{x}")  # into the diskcache
    assert sim.count == 20
    done = llmframe.copy_cache(cache_dir, pg_url)
    assert done == {"copied": 20, "present": 0}
    out = gen(frame(20), "{x}", cache=pg_url)
    assert sim.count == 20, "a laptop's answers seed the team's store: nothing is asked again"
    assert out.attrs["llmframe"]["cached"] == 20
    disk = dict(open_store(cache_dir).entries())
    assert dict(store_at(pg_url).entries()) == disk, "the values are byte for byte those diskcache holds"


def test_the_environment_chooses_the_store_and_cache_dir_still_means_diskcache(gen, sim, pg_url, cache_dir,
                                                                             monkeypatch, tmp_path):
    monkeypatch.setenv("LLMFRAME_CACHE_URL", pg_url)
    gen(frame(5), "{x}")
    assert len(store_at(pg_url)) == 5 and not (cache_dir / "cache.db").exists()
    assert llmframe.cache_stats()["entries"] == 5, "stats read the store runs use"
    local = tmp_path / "local"
    gen(frame(5), "{x}", cache_dir=str(local))
    assert sim.count == 10, "cache_dir= is a diskcache, whatever LLMFRAME_CACHE_URL says"
    assert len(open_store(local)) == 5


def test_failures_are_never_stored_and_refresh_replaces(gen, sim, pg_url, monkeypatch):
    def answer(body):
        prompt = body["messages"][-1]["content"]
        if prompt.endswith("3"):
            raise SimulatedError(400, "not allowed")
        return digest_answer(prompt)

    sim.answer = answer
    out = gen(frame(10), "{x}", cache=pg_url)
    assert out["response"].isna().sum() == 1 and len(store_at(pg_url)) == 9, "the failed row is not stored"
    sim.answer = lambda body: "fresh"
    monkeypatch.setenv("LLMFRAME_CACHE_URL", pg_url)
    refreshed = gen(frame(10), "{x}", cache="refresh")
    assert sim.count == 20 and (refreshed["response"] == "fresh").all()
    assert (gen(frame(10), "{x}", cache=pg_url)["response"] == "fresh").all() and sim.count == 20
    assert len(store_at(pg_url)) == 10


CLIENT = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    import llmframe
    rows, base_url, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    df = pd.DataFrame({"x": [f"row {i}" for i in range(rows)]})
    out = df.llm.generate("{x}", model="openai:sim-model", base_url=base_url, api_key="sim-key",
                          max_concurrency=8, progress=False, cache=url)
    print(json.dumps(out.attrs["llmframe"]), flush=True)
    """
)


@pytest.mark.slow
def test_processes_writing_at_once_lose_nothing_and_count_duplicates(sim, pg_url):
    rows = 300
    sim.latency = 0.01
    clients = [subprocess.Popen([sys.executable, "-c", CLIENT, str(rows), sim.base_url, pg_url], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": os.getcwd()}) for _ in range(3)]
    reports = []
    for client in clients:
        out, err = client.communicate(timeout=180)
        assert client.returncode == 0, err
        reports.append(json.loads(out))
    assert all(r["failed"] == 0 and r["rows"] == rows for r in reports)
    assert len(store_at(pg_url)) == rows, "one answer per row"
    assert sum(r["requests_sent"] for r in reports) == sim.count
    assert sum(r["concurrent_duplicates"] for r in reports) == sim.count - rows, "rows paid twice are counted"


def test_bulk_put_if_absent_counts_what_was_there(pg_url):
    store = store_at(pg_url)
    first = [(f"k{i}", Response(f"a{i}", 1, 1, "stop").to_cache(MODEL, time.time())) for i in range(2500)]
    assert store.set_many(first) == 0
    assert store.set_many(first[:10] + [("new", first[0][1])]) == 10
    assert store.get_many(["k0", "missing", "k2499"]) == [first[0][1], None, first[2499][1]]
    store.set_many([("k0", "replaced")], overwrite=True)
    assert store.get_many(["k0"]) == ["replaced"] and len(store) == 2501


def test_stats_clear_prune_and_copy_on_the_command_line(gen, sim, pg_url, cache_dir):
    gen(frame(6), "{x}", cache=pg_url)
    gen(frame(4), "{x}", model="openai:other", cache=pg_url)
    old = time.time() - 40 * 86400
    store_at(pg_url).set_many([(f"old{i}", Response("o", 1, 1, "stop").to_cache(MODEL, old)) for i in range(3)])
    stats = json.loads(cli("cache", "stats", "--cache-url", pg_url, "--json").stdout)
    assert stats["entries"] == 13 and stats["models"][MODEL]["entries"] == 9
    assert stats["models"]["openai:other"]["entries"] == 4 and stats["size_limit_bytes"] is None
    shown = cli("cache", "stats", env={"LLMFRAME_CACHE_URL": pg_url})
    assert "entries    13" in shown.stdout and "***" in shown.stdout, shown.stderr
    refused = cli("cache", "prune", "--cache-url", pg_url)
    assert refused.returncode != 0 and "--older-than" in refused.stderr
    pruned = cli("cache", "prune", "--older-than", "30d", "--cache-url", pg_url)
    assert pruned.returncode == 0 and "Removed 3 " in pruned.stdout, pruned.stderr
    cleared = cli("cache", "clear", "--model", "openai:other", "--cache-url", pg_url)
    assert "Removed 4 " in cleared.stdout and len(store_at(pg_url)) == 6
    target = cache_dir.parent / "snapshot"
    copied = cli("cache", "copy", pg_url, str(target))
    assert copied.returncode == 0 and "Copied 6 answers" in copied.stdout, copied.stderr
    assert "0 already there" in copied.stdout
    again = cli("cache", "copy", pg_url, str(target))
    assert "Copied 0 answers" in again.stdout and "6 already there" in again.stdout, "a copy is idempotent"
    everything = cli("cache", "clear", "--yes", "--cache-url", pg_url)
    assert "Removed 6 " in everything.stdout and len(store_at(pg_url)) == 0
    assert cli("cache", "copy", str(target), pg_url).returncode == 0 and len(store_at(pg_url)) == 6
    for done in (shown, pruned, cleared, copied, again, everything):
        assert pg_url.split(":")[2].split("@")[0] not in done.stdout + done.stderr, "the password is never shown"


def test_llmframe_run_writes_to_the_shared_store_and_a_second_run_sends_nothing(sim, pg_cluster, pg_url,
                                                                                 cache_dir, tmp_path):
    import pyarrow.parquet as pq

    pd.DataFrame({"x": [f"cli {i}" for i in range(25)]}).to_parquet(tmp_path / "in.parquet")
    base = ["run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--template", "{x}", "--model",
            MODEL, "--base-url", sim.base_url, "--api-key", sim.api_key, "--overwrite", "--cache", pg_url]
    first = cli(*base)
    assert first.returncode == 0 and "25 sent, 0 cached" in first.stderr, first.stderr
    assert sim.count == 25 and len(store_at(pg_url)) == 25 and not (cache_dir / "cache.db").exists()
    second = cli(*base)
    assert second.returncode == 0 and "0 sent, 25 cached" in second.stderr, second.stderr
    assert sim.count == 25, "the second run's answers all come from the shared store"
    out = pq.read_table(tmp_path / "out.parquet")
    assert out["response"].to_pylist() == [digest_answer(f"cli {i}") for i in range(25)]
    provenance = out.schema.metadata[b"llmframe"].decode()
    assert json.loads(provenance)["parameters"]["cache"] == pg_url.replace(pg_cluster.password, "***")
    info = cli("info", str(tmp_path / "out.parquet"))
    assert info.returncode == 0 and "cache='postgresql://" in info.stdout, info.stderr
    wrong = cli(*base[:-1], pg_url.replace(pg_cluster.password, "not-the-Pa55word"))
    assert wrong.returncode == 2 and "password authentication failed" in wrong.stderr and sim.count == 25
    typo = cli(*base[:-1], pg_url.replace("postgresql", "postgresq1"))
    assert typo.returncode == 2 and "argument --cache: expected on, refresh, off or a postgresql:// URL" in typo.stderr
    for done in (first, second, info, typo):
        assert pg_cluster.password not in done.stdout + done.stderr, "the password is never printed"
    assert pg_cluster.password not in provenance and "not-the-Pa55word" not in wrong.stdout + wrong.stderr


def test_synchronous_commit_off_is_an_opt_in_of_the_url(gen, sim, pg_cluster, pg_url):
    # The test server runs without durability (fsync off): this database is given the durable default back.
    pg_cluster.execute(f'ALTER DATABASE "{pg_url.rsplit("/", 1)[1]}" SET synchronous_commit = on')
    fast = pg_url + "?options=-c%20synchronous_commit%3Doff"  # README "A shared cache": durability
    out = gen(frame(8), "{x}", cache=fast)
    assert sim.count == 8 and out.attrs["llmframe"]["failed"] == 0 and len(store_at(pg_url)) == 8
    with store_at(fast)._connection() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off", "libpq's options= reach the session"
    with store_at(pg_url)._connection() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on", "the default stays durable"


def test_an_interrupted_copy_resumes(pg_url, cache_dir, pg_cluster):
    disk = open_store(cache_dir)
    items = [(f"k{i:05d}", Response(f"a{i}", 1, 1, "stop").to_cache(MODEL, time.time())) for i in range(5000)]
    disk.set_many(items)
    seen = []

    def stop_after_two_chunks(copied, present):
        seen.append(copied)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        llmframe.copy_cache(cache_dir, pg_url, progress=stop_after_two_chunks)
    assert 0 < len(store_at(pg_url)) < 5000
    partial = len(store_at(pg_url))
    done = llmframe.copy_cache(cache_dir, pg_url)
    assert done == {"copied": 5000 - partial, "present": partial} and len(store_at(pg_url)) == 5000
    # And back, from PostgreSQL (streamed by key pages) into a new directory.
    other = cache_dir.parent / "other"
    assert llmframe.copy_cache(pg_url, other) == {"copied": 5000, "present": 0}
    assert dict(open_store(other).entries()) == dict(items)
    with pytest.raises(ConfigError, match="same store"):
        llmframe.copy_cache(pg_url, pg_url)


# --- bad input: clear errors before any request is sent ---------------------------------------------


def test_an_unreachable_server_fails_before_anything_is_sent(gen, sim, pg_cluster):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(CacheError, match="cannot use the shared cache") as info:
        gen(frame(3), "{x}", cache=f"postgresql://u:hunter2-secret@127.0.0.1:{port}/db")
    assert sim.count == 0 and "hunter2" not in str(info.value) and "cache=False" in str(info.value)


def test_a_wrong_password_fails_before_anything_is_sent_and_is_never_shown(gen, sim, pg_cluster, pg_url):
    wrong = pg_url.replace(pg_cluster.password, "not-the-Pa55word")
    with pytest.raises(CacheError, match="password authentication failed") as info:
        gen(frame(3), "{x}", cache=wrong)
    text = str(info.value) + repr(info.value) + str(info.value.__cause__) + str(info.value.__context__)
    assert sim.count == 0 and "not-the-Pa55word" not in text and "PGPASSWORD" in text


def test_no_table_and_no_right_to_create_it(gen, sim, pg_cluster, pg_url):
    database = pg_url.rsplit("/", 1)[1]
    pg_cluster.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
    url = pg_cluster.url(database, user="reader", password="reader-pw")
    with pytest.raises(CacheError, match="may not create it") as info:
        gen(frame(3), "{x}", cache=url)
    assert sim.count == 0 and "create_sql" in str(info.value) and "reader-pw" not in str(info.value)
    # The owner creates the tables and grants too little: that is named too.
    from llmframe.stores.postgresql import create_sql

    pg_cluster.execute(create_sql(), database)
    pg_cluster.execute("GRANT SELECT ON llmframe_answers, llmframe_meta TO reader", database)
    with pytest.raises(CacheError, match="may not INSERT, DELETE"):
        gen(frame(3), "{x}", cache=url)
    pg_cluster.execute("GRANT INSERT, DELETE ON llmframe_answers TO reader", database)
    gen(frame(3), "{x}", cache=url)
    assert sim.count == 3 and len(store_at(pg_url)) == 3, "SELECT, INSERT and DELETE are all a role needs"


def test_a_store_of_a_newer_format_is_refused(gen, sim, pg_cluster, pg_url):
    store_at(pg_url).close()  # makes the tables
    pg_cluster.execute("UPDATE llmframe_meta SET value = '99' WHERE name = 'format'", pg_url.rsplit("/", 1)[1])
    with pytest.raises(CacheError, match="format 99, newer than this llmframe reads.*upgrade llmframe"):
        gen(frame(3), "{x}", cache=pg_url)
    assert sim.count == 0


def test_a_bad_cache_value_is_a_config_error_without_the_url():
    with pytest.raises(ConfigError, match="postgresql:// URL") as info:
        pd.DataFrame({"x": ["a"]}).llm.generate("{x}", model=MODEL, cache="mysql://u:topsecret@h/db")
    assert "topsecret" not in str(info.value)


# --- security: the password never reaches a repr, a log, a report or a warning -----------------------


def test_the_password_never_shows(gen, sim, pg_cluster, pg_url, caplog):
    from llmframe.faces.frames import rows_of
    from llmframe.faces.planning import plan as make_plan

    secret = pg_cluster.password
    plan = make_plan(rows_of(frame(2)), "{x}", model=MODEL, base_url=sim.base_url, cache=pg_url)
    assert secret not in repr(plan) and secret not in str(plan.cache) and "***" in repr(plan.cache)
    assert secret not in repr(store_at(pg_url))
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = gen(frame(5), "{x}", cache=pg_url)
    report = json.dumps(out.attrs["llmframe"], default=str)
    said = report + caplog.text + " ".join(str(w.message) for w in caught)
    assert secret not in said and out["response"].notna().all()
    assert secret not in json.dumps(llmframe.cache_stats(pg_url), default=str)


# --- the server going away mid-run --------------------------------------------------------------------


@pytest.mark.slow
def test_the_server_going_away_mid_run_loses_nothing(gen, sim):
    from .pg import need_postgres
    from llmframe.testing.postgres import Cluster

    need_postgres()
    with Cluster() as cluster:  # its own server, stopped mid-run
        url = cluster.create_database("away")
        gen(frame(100), "{x}", cache=url)  # already stored before the run
        stored = dict(store_at(url).entries())
        answered = threading.Event()

        def answer(body):
            if sim.count >= 200 and not answered.is_set():
                answered.set()
                threading.Thread(target=cluster.stop, daemon=True).start()
            return digest_answer(body["messages"][-1]["content"])

        sim.answer = answer
        with pytest.warns(RuntimeWarning, match="could not be (written to|looked up in)") as caught:
            out = gen(frame(3000), "{x}", cache=url, max_concurrency=4)
        assert out["response"].tolist() == [digest_answer(f"row {i}") for i in range(3000)], "every answer returned"
        assert all(cluster.password not in str(w.message) for w in caught)
        store_at(url).close()  # this process's pool saw the server go: a new one after the restart
        cluster.start()
        after = dict(store_at(url).entries())
        assert all(after.get(k) == v for k, v in stored.items()), "nothing already stored is lost"
        # 100 requests of this run were sent before the stop, and a worker sends its next one only once its
        # answer is stored: all but the 4 in flight are there.
        assert len(after) >= 100 + 100 - 4 and all(Response.many_from_cache(list(after.values())))


# --- native batch jobs: job state stays local, answers go to the shared store ------------------------


def test_batch_answers_go_to_the_shared_store_and_job_state_stays_local(sim, pg_url, cache_dir):
    from llmframe.testing.batches import BatchSettings

    sim.batches.settings = BatchSettings(seconds=0.1)
    kwargs = dict(model=MODEL, base_url=sim.base_url, api_key=sim.api_key, progress=False, poll_interval=0.02)
    out = frame(12).llm.generate("{x}", mode="batch", cache=pg_url, **kwargs)
    assert out["response"].tolist() == [digest_answer(f"row {i}") for i in range(12)] and sim.count == 0
    values = [v for _k, v in store_at(pg_url).entries()]
    assert len(values) == 12 and all(r.batch for r in Response.many_from_cache(values))
    states = list((cache_dir / "batches").glob("*"))
    assert states and not (cache_dir / "cache.db").exists(), "the job's state is local; no answer is"
    online = frame(12).llm.generate("{x}", cache=pg_url, **kwargs)
    assert online.attrs["llmframe"]["cached"] == 12 and sim.count == 0 and len(sim.batches.created) == 1
