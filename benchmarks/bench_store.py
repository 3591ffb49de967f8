"""The shared PostgreSQL store against the embedded diskcache, in one run on one machine (issue 27).

    python benchmarks/bench_store.py [--rows 100000] [--online 20000] [--repeats 3]

1. Cached re-run: `rows` answers already stored, df.llm.generate over them (nothing is sent);
   rows/s, median of `repeats`. Target: >= 50,000 rows/s from PostgreSQL.
2. Writes keep pace: an online run of `online` rows at 20 ms per answer with 1,000 requests in
   flight, cache=False vs diskcache vs PostgreSQL; rows/s, and the most answers ever waiting for
   the store (the back-pressure line is constants.CACHE_BACKLOG_ROWS).
3. Four processes sharing one store: each runs its own quarter of `online` rows at 20 ms / 250 in
   flight, all at once, then all four re-run cached; aggregate rows/s for each store, and the writer's
   batches (one commit each). `--four-only`: this scenario alone, `repeats` times interleaved, with
   a third store: PostgreSQL with synchronous_commit=off for the session (the URL's options=).

PostgreSQL is a throwaway local cluster (llmframe.testing.postgres) with its default durability
(fsync, synchronous_commit on); diskcache is a directory on the same disk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

import llmframe  # noqa: E402,F401
from llmframe import constants  # noqa: E402
from llmframe.cacheurl import CacheURL  # noqa: E402
from llmframe.engine import writer as writer_module  # noqa: E402
from llmframe.faces.frames import rows_of  # noqa: E402
from llmframe.faces.planning import plan as make_plan  # noqa: E402
from llmframe.plan.request import Response  # noqa: E402
from llmframe.stores.manage import open_cache  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402
from llmframe.testing.postgres import Cluster  # noqa: E402

MODEL = "openai:sim-model"
TEMPLATE = "Sentiment of this review, one word:\n{review}"


def frame(rows: int, tag: str = "r") -> pd.DataFrame:
    return pd.DataFrame({"review": [f"Review {tag}{i}: it arrived on time and works as described." for i in range(rows)]})


def seed(store, df: pd.DataFrame, base_url: str) -> None:
    """Store an answer for every row of df under the keys a run would look up."""
    plan = make_plan(rows_of(df), TEMPLATE, model=MODEL, base_url=base_url, api_key="sim", cache=False)
    keys = plan.keys[:]
    values = Response.many_to_cache([Response("positive", 20, 1, "stop")] * len(keys), MODEL, time.time())
    for start in range(0, len(keys), 5000):
        store.set_many(list(zip(keys[start:start + 5000], values[start:start + 5000])))


def generate(df: pd.DataFrame, base_url: str, cache, **kwargs) -> tuple[float, dict]:
    start = time.perf_counter()
    out = df.llm.generate(TEMPLATE, model=MODEL, base_url=base_url, api_key="sim", progress=False, cache=cache,
                          **kwargs)
    return time.perf_counter() - start, out.attrs["llmframe"]


def cached_rerun(rows: int, repeats: int, base_url: str, url: str, directory: str) -> dict:
    df = frame(rows)
    stores = {"diskcache": directory, "postgresql": url}
    seed(open_cache(True, directory, None), df, base_url)
    seed(open_cache(CacheURL(url), None, None), df, base_url)
    times: dict[str, list[float]] = {name: [] for name in stores}
    for _ in range(repeats):  # interleaved, so both see the same load
        for name, where in stores.items():
            cache = CacheURL(where) if name == "postgresql" else True
            seconds, report = generate(df, base_url, cache, cache_dir=None if name == "postgresql" else where)
            assert report["cached"] == rows and report["requests_sent"] == 0, report
            times[name].append(seconds)
    return {name: rows / statistics.median(t) for name, t in times.items()}


def online(rows: int, base_url: str, url: str, directory: str) -> dict:
    """rows/s of a 20 ms run with 1,000 in flight, per store, and the largest writer backlog seen."""
    peaks: dict[str, int] = {}
    add = writer_module.CacheWriter.add

    def watched(self, *args, **kwargs):
        add(self, *args, **kwargs)
        peaks[current] = max(peaks.get(current, 0), self.backlog)

    writer_module.CacheWriter.add = watched
    results = {}
    generate(frame(1000, "warm"), base_url, False, max_concurrency=1000)  # connections and threads up first
    try:
        for current, cache, tag in (("off", False, "a"), ("diskcache", True, "b"), ("postgresql", CacheURL(url), "c")):
            seconds, report = generate(frame(rows, tag), base_url, cache, max_concurrency=1000,
                                       cache_dir=directory if cache is True else None)
            assert report["requests_sent"] == rows and report["failed"] == 0, report
            results[current] = {"rows_per_s": rows / seconds, "peak_backlog": peaks.get(current, 0)}
    finally:
        writer_module.CacheWriter.add = add
    return results


WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[5])
import pandas as pd
import llmframe
rows, tag, base_url, cache = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
df = pd.DataFrame({"review": [f"Review {tag}{i}: it arrived on time and works as described." for i in range(rows)]})
options = {"cache": cache} if cache.startswith("postgresql") else {"cache_dir": cache}
from llmframe.stores import diskcache, postgresql
writes = {"writes": 0, "rows_written": 0, "write_seconds": 0.0}  # the writer's batches: one commit each
for store_class in (diskcache.Store, postgresql.PostgresStore):
    def counted(self, items, *, overwrite=False, _set=store_class.set_many):
        start = time.perf_counter()
        try:
            return _set(self, items, overwrite=overwrite)
        finally:
            writes["writes"] += bool(items)
            writes["rows_written"] += len(items)
            writes["write_seconds"] += time.perf_counter() - start
    store_class.set_many = counted
for label in ("first", "again"):
    start = time.perf_counter()
    out = df.llm.generate("Sentiment of this review, one word:\\n{review}", model="openai:sim-model", base_url=base_url,
                          api_key="sim", progress=False, max_concurrency=250, **options)
    print(json.dumps({"run": label, "seconds": time.perf_counter() - start, **out.attrs["llmframe"], **writes}),
          flush=True)
    if label == "first":
        sys.stdin.readline()  # the second run starts when all four are told to, so they read at once too
"""


def four_processes(rows: int, base_url: str, stores: dict[str, str], repeats: int = 1) -> dict:
    """Each store in turn (interleaved over repeats, so all see the same load): four processes at once.

    stores: name -> a diskcache directory or a postgresql:// URL. Per store, the medians of the repeats."""
    runs: dict[str, list[dict]] = {name: [] for name in stores}
    for repeat in range(repeats):
        for name, target in stores.items():
            runs[name].append(_four_at_once(rows, base_url, target, f"{name}{repeat}"))
    return {name: {key: statistics.median(r[key] for r in found) for key in found[0]} for name, found in runs.items()}


def _four_at_once(rows: int, base_url: str, target: str, tag: str) -> dict:
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(rows // 4), f"{tag}-{k}-", base_url, target,
                                 str(ROOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for k in range(4)]
    firsts = [json.loads(w.stdout.readline()) for w in workers]
    for w in workers:
        w.stdin.write("\n")
        w.stdin.flush()
    agains = [json.loads(w.stdout.readline()) for w in workers]
    # The slowest process's run time: process start-up (imports) is left out.
    first_wall, again_wall = max(r["seconds"] for r in firsts), max(r["seconds"] for r in agains)
    for w in workers:
        w.wait(60)
    assert all(r["failed"] == 0 for r in firsts) and all(r["cached"] == rows // 4 for r in agains)
    writes = sum(r["writes"] for r in firsts)
    return {"online_rows_per_s": rows / first_wall, "cached_rows_per_s": rows / again_wall,
            "duplicates": sum(r["concurrent_duplicates"] for r in firsts), "writes": writes,
            "rows_per_write": sum(r["rows_written"] for r in firsts) / max(writes, 1),
            "ms_per_write": 1000 * sum(r["write_seconds"] for r in firsts) / max(writes, 1)}


def no_sync_commit(url: str) -> str:
    """The URL with libpq's options=-c synchronous_commit=off: this session's commits do not wait for the disk."""
    return url + ("&" if "?" in url else "?") + "options=-c%20synchronous_commit%3Doff"


def print_four(rows: int, shared: dict) -> None:
    for name, r in shared.items():
        print(f"four processes, one {name} store, {rows:,} rows in all: online {r['online_rows_per_s']:,.0f} "
              f"rows/s, then cached {r['cached_rows_per_s']:,.0f} rows/s, duplicates {r['duplicates']:.0f}; "
              f"{r['writes']:.0f} writes of {r['rows_per_write']:.1f} rows, {r['ms_per_write']:.1f} ms each")
    base = shared["diskcache"]["online_rows_per_s"]
    print("online / diskcache: " + ", ".join(f"{name} {r['online_rows_per_s'] / base:.2f}"
                                            for name, r in shared.items() if name != "diskcache"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--online", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--four-only", action="store_true",
                        help="only the four-process scenario, repeated and interleaved: diskcache, PostgreSQL, "
                             "and PostgreSQL with synchronous_commit=off")
    args = parser.parse_args()
    import psycopg

    print(f"llmframe {llmframe.__version__}, psycopg {psycopg.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with Cluster(durable=True) as cluster, tempfile.TemporaryDirectory() as tmp, \
            SimulatorProcess(latency=0.0, max_seconds=3600) as fast, \
            SimulatorProcess(latency=0.02, max_seconds=3600) as slow:
        print(f"PostgreSQL {cluster.execute('SHOW server_version')[0][0]}")
        if args.four_only:
            url = cluster.create_database("shared")
            stores = {"diskcache": f"{tmp}/four", "postgresql": url,
                      "postgresql synchronous_commit=off": no_sync_commit(url)}
            print_four(args.online, four_processes(args.online, slow.base_url, stores, args.repeats))
            return
        rerun = cached_rerun(args.rows, args.repeats, fast.base_url, cluster.create_database("rerun"), f"{tmp}/rerun")
        print(f"cached re-run of {args.rows:,} rows (median of {args.repeats}): "
              + ", ".join(f"{k} {v:,.0f} rows/s" for k, v in rerun.items())
              + f"; postgresql / diskcache = {rerun['postgresql'] / rerun['diskcache']:.2f}")
        paced = online(args.online, slow.base_url, cluster.create_database("online"), f"{tmp}/online")
        print(f"online, {args.online:,} rows at 20 ms / 1,000 in flight: "
              + ", ".join(f"{k} {v['rows_per_s']:,.0f} rows/s (peak backlog {v['peak_backlog']:,})"
                          for k, v in paced.items())
              + f"; postgresql / off = {paced['postgresql']['rows_per_s'] / paced['off']['rows_per_s']:.2f}, "
              f"diskcache / off = {paced['diskcache']['rows_per_s'] / paced['off']['rows_per_s']:.2f} "
              f"(back-pressure starts at {constants.CACHE_BACKLOG_ROWS:,})")
        shared = four_processes(args.online, slow.base_url, {"diskcache": f"{tmp}/four",
                                                             "postgresql": cluster.create_database("shared")})
        print_four(args.online, shared)


if __name__ == "__main__":
    main()
