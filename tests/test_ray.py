"""llmframe.ray on a local Ray cluster, against the simulator in its own process (Ray's workers reach it over loopback).

One cluster serves the whole module: Ray's start-up costs tens of seconds on CI's two cores.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from llmframe.errors import CacheError, ConfigError, TemplateError
from llmframe.testing import SimulatorProcess, digest_answer

from .conftest import MODEL
from .pg import pg_cluster, pg_url  # noqa: F401  (fixtures: the shared store)

ray = pytest.importorskip("ray")
lray = pytest.importorskip("llmframe.ray")

# Generous per-test limits: a job waits for actors to start, tens of seconds on a busy two-core machine.
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]

ACTORS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A two-CPU local cluster, small and quiet, always shut down; workers never see the user's cache."""
    home = tmp_path_factory.mktemp("ray-default-cache")
    settings = dict(num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20, log_to_driver=False,
                    runtime_env={"env_vars": {"LLMFRAME_CACHE_DIR": str(home)}})
    for attempt in range(3):
        try:
            ray.init(**settings)
            break
        except Exception:  # a raylet that misses Ray's fixed 30 s start-up window on a busy machine: again
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def server():
    """A plain simulator in a child process; tests read its request count as deltas."""
    with SimulatorProcess(latency=0.0, max_seconds=900) as sim:
        yield sim


def write_parquet(directory: Path, frame: pd.DataFrame, files: int) -> Path:
    """The frame as several Parquet files, so Ray reads several blocks and every actor gets work."""
    directory.mkdir()
    step = -(-len(frame) // files)
    for i in range(files):
        frame.iloc[i * step:(i + 1) * step].to_parquet(directory / f"part-{i}.parquet", index=False)
    return directory


def read(source: Path):
    """The Parquet files as a Dataset of a few blocks per actor."""
    return ray.data.read_parquet(str(source), override_num_blocks=ACTORS * 2)


def call(sim, **kwargs):
    """The keyword arguments of a generate call against the simulator."""
    return {"model": MODEL, "base_url": sim.base_url, "api_key": sim.api_key, "progress": False, **kwargs}


def test_bad_arguments_fail_before_anything_runs(cluster, server):
    ds = ray.data.from_pandas(pd.DataFrame({"text": ["a", "b"]}))
    before = server.count
    with pytest.raises(TemplateError, match="nope"):
        lray.generate(ds, "{nope}", **call(server))
    with pytest.raises(ConfigError, match="budget"):
        lray.generate(ds, "{text}", budget="even", **call(server))
    with pytest.raises(ConfigError, match="output_mode"):
        lray.generate(ds, "{text}", output={"type": "object", "properties": {"a": {"type": "string"}}},
                      output_mode="object", **call(server))
    with pytest.raises(ConfigError, match="mode='batch'"):
        lray.generate(ds, "{text}", mode="batch", **call(server))
    with pytest.raises(ConfigError, match="unknown option"):
        lray.generate(ds, "{text}", temprature=0.1, **call(server))
    with pytest.raises(ConfigError, match="concurrency"):
        lray.generate(ds, "{text}", concurrency=0, **call(server))
    with pytest.raises(ConfigError, match="not returned by llmframe.ray.generate"):
        lray.report(ds)
    with pytest.raises(CacheError, match="cannot use the shared cache") as unreachable:  # nothing listens on port 1
        lray.generate(ds, "{text}", **call(server, cache="postgresql://team:pg-Secret@127.0.0.1:1/answers"))
    assert "pg-Secret" not in str(unreachable.value)
    assert server.count == before


def test_20k_rows_from_parquet_equal_a_single_process_run(cluster, server, tmp_path):
    rows = 20_000
    frame = pd.DataFrame({"id": range(rows), "text": [f"review {i}" for i in range(rows)]})
    frame.loc[frame.index % 1000 == 7, "text"] = None  # skipped rows: a per-row error, as on one machine
    source = write_parquet(tmp_path / "in", frame, files=8)

    before = server.count
    ds = lray.generate(read(source), "Sentiment of: {text}", concurrency=ACTORS,
                       batch_size=2500, **call(server, cache_dir=str(tmp_path / "ray-cache")))
    distributed = ds.to_pandas().sort_values("id").reset_index(drop=True)
    sent_by_ray = server.count - before

    single = pd.read_parquet(source).llm.generate("Sentiment of: {text}",
                                                  **call(server, cache_dir=str(tmp_path / "single-cache")))
    single = single.sort_values("id").reset_index(drop=True)

    assert len(distributed) == rows
    pd.testing.assert_frame_equal(distributed[single.columns], single, check_dtype=False)
    assert distributed["response"].iloc[0] == digest_answer("Sentiment of: review 0")
    assert distributed["response_error"].notna().sum() == rows // 1000
    report, alone = lray.report(ds), single.attrs["llmframe"]
    for name in ("rows", "requests_sent", "failed", "skipped", "cached", "input_tokens", "output_tokens"):
        assert report[name] == alone[name], name
    assert report["runs"] == rows // 2500
    assert sent_by_ray == rows - rows // 1000


def test_global_rpm_holds_at_the_simulator(cluster, tmp_path):
    rpm, rows = 3000, 500  # 50 requests a second across both actors: ten seconds of work
    frame = pd.DataFrame({"text": [f"paced {i}" for i in range(rows)]})
    source = write_parquet(tmp_path / "in", frame, files=ACTORS)
    # The server refuses anything beyond rpm (with one second of burst, as OpenAI enforces per second).
    with SimulatorProcess(latency=0.01, rpm=rpm, burst_seconds=1.0, max_seconds=300) as limited:
        samples: list[tuple[float, int]] = []  # (time, requests the server has received), four times a second
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append((time.monotonic(), limited.count))
                done.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ds = lray.generate(read(source), "{text}",
                           concurrency=ACTORS, batch_size=rows // 4, rpm=rpm, **call(limited, cache_dir=str(tmp_path)))
        out = ds.to_pandas()
        done.set()
        sampler.join(5)
        stats = limited.stats()
    report = lray.report(ds)
    assert out["response_error"].isna().all()
    assert stats["statuses"]["200"] == rows
    # Each actor alone would send at the full rate: twice the limit, hundreds of 429s.
    assert stats["faults"].get("rpm", 0) <= rows * 0.02, stats
    assert report["rate_limited"] == stats["faults"].get("rpm", 0)
    # The rate the server saw while the job was in full swing (10% to 90% of the requests): close to the
    # limit, not over it, and not far under it (which an even split of the budget risks).
    start = next(t for t, n in samples if n >= rows * 0.1)
    end = next(t for t, n in samples if n >= rows * 0.9)
    rate = rows * 0.8 / (end - start) * 60
    assert 0.6 * rpm <= rate <= 1.15 * rpm, rate


def _kill_one_actor_after(sim, requests: float, killed: list[int]) -> threading.Thread:
    """A thread that SIGKILLs one actor of the pool once sim has seen `requests` requests (its pid into killed)."""

    def kill_one_actor_mid_run() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and sim.count < requests:
            time.sleep(0.05)
        pids = _actor_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)  # as the OOM killer or a lost node would
            killed.append(pids[0])

    killer = threading.Thread(target=kill_one_actor_mid_run, daemon=True)
    killer.start()
    return killer


def _actor_pids() -> list[int]:
    """Processes of the pool's actors, found by the title Ray gives them."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "MapBatches(_Generate)" in title and "ray::" in title:
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor's process through /proc")
def test_an_actor_killed_mid_run_loses_no_finished_rows(cluster, tmp_path):
    rows, batch = 2000, 500
    frame = pd.DataFrame({"text": [f"durable {i}" for i in range(rows)]})
    source = write_parquet(tmp_path / "in", frame, files=4)
    cache_dir = str(tmp_path / "cache")
    killed: list[int] = []

    with SimulatorProcess(latency=0.05, max_seconds=300) as slow:
        kwargs = call(slow, max_concurrency=16, cache_dir=cache_dir)

        killer = _kill_one_actor_after(slow, rows * 0.3, killed)
        ds = lray.generate(read(source), "{text}", concurrency=ACTORS, batch_size=batch,
                           **kwargs)
        out = ds.to_pandas()
        killer.join(10)
        first = slow.count

        # The same job again (in this process: the same code path and cache keys): every row is cached.
        again = pd.read_parquet(source).llm.generate("{text}", **kwargs)
        second = slow.count - first

    assert killed, "no actor process was found to kill"
    assert sorted(out["response"]) == sorted(digest_answer(t) for t in frame["text"])
    assert out["response_error"].isna().all()
    # Ray restarted the actor and retried its batch; the answers it had finished came from the cache.
    # Lost at most what was in flight (16) and the last 0.2 s of answers not yet written (~64), not the
    # half batch (~250 rows) it had done.
    assert rows <= first <= rows + 120, first
    assert second == 0
    assert again.attrs["llmframe"]["cached"] == rows
    assert sorted(again["response"]) == sorted(out["response"])


def test_every_actor_uses_the_shared_store_and_a_killed_one_resumes_from_it(cluster, tmp_path, monkeypatch, pg_url):
    from llmframe.cacheurl import CacheURL
    from llmframe.stores.postgresql import open_postgres

    rows, batch = 1200, 300
    frame = pd.DataFrame({"text": [f"shared {i}" for i in range(rows)]})
    source = write_parquet(tmp_path / "in", frame, files=4)
    monkeypatch.setenv("LLMFRAME_CACHE_URL", pg_url)  # the driver's only: each actor gets it from the call
    killed: list[int] = []
    with SimulatorProcess(latency=0.05, max_seconds=300) as slow:
        kwargs = call(slow, max_concurrency=16)

        killer = _kill_one_actor_after(slow, rows * 0.3, killed)
        out = lray.generate(read(source), "{text}", concurrency=ACTORS, batch_size=batch, **kwargs).to_pandas()
        killer.join(10)
        first = slow.count
        again = lray.generate(read(source), "{text}", concurrency=ACTORS, batch_size=batch, **kwargs)
        repeated = again.to_pandas()
        second = slow.count - first

    assert killed, "no actor process was found to kill"
    assert sorted(out["response"]) == sorted(digest_answer(t) for t in frame["text"])
    assert len(open_postgres(CacheURL(pg_url))) == rows, "every actor wrote to the shared store"
    # The restarted actor's batch came back from the store: at most what was in flight was asked again.
    assert rows <= first <= rows + 120, first
    assert second == 0 and lray.report(again)["cached"] == rows
    assert sorted(repeated["response"]) == sorted(out["response"])
