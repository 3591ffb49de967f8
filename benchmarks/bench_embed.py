"""Embeddings benchmark (issue 22): df.llm.embed against a raw aiohttp client, the cached re-run, peak memory,
search and sim_join.

python benchmarks/bench_embed.py [--rows 100000] [--latency 0.02] [--dimensions 256] [--memory-rows 100000]
                                 [--search-rows 1000000] [--join-left 10000] [--join-right 100000]

Prints a markdown table for benchmarks/RESULTS.md. The simulator runs in a child process, so its CPU is not the
client's. The raw client sends exactly the packs llmframe sends (same inputs per request, same concurrency,
base64 vectors decoded into one float32 matrix). Peak memory is measured in a fresh process (--memory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

import llmframe  # noqa: E402
from llmframe import constants  # noqa: E402
from llmframe.ops import vectors as ops  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402

MODEL = "text-embedding-3-small"
WORDS = "the quick brown fox jumps over a lazy dog near river bank under blue sky".split()


def texts(n: int) -> list[str]:
    """n short distinct texts (about 8 words)."""
    return [f"{WORDS[i % 15]} {WORDS[(i // 15) % 15]} {WORDS[(i // 225) % 15]} fox item {i}" for i in range(n)]


def pack_size(n: int, concurrency: int) -> int:
    """The inputs per request llmframe's pool uses for n rows (engine.pool._pack_size)."""
    return min(constants.OPENAI_EMBEDDING_LIMITS[0], max(constants.EMBEDDING_MIN_PACK, math.ceil(n / concurrency)))


async def raw_client(base_url: str, key: str, inputs: list[str], pack: int, concurrency: int,
                     dimensions: int) -> np.ndarray:
    """The baseline: the same packs posted with aiohttp, concurrency at a time, vectors decoded."""
    import base64

    out = np.empty((len(inputs), dimensions), dtype=np.float32)
    starts = list(range(0, len(inputs), pack))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {key}"}) as session:
        async def worker():
            while starts:
                start = starts.pop()
                body = {"model": MODEL, "input": inputs[start : start + pack], "encoding_format": "base64",
                        "dimensions": dimensions}
                async with session.post(f"{base_url}/embeddings", json=body) as reply:
                    data = (await reply.json())["data"]
                raw = b"".join(base64.b64decode(d["embedding"]) for d in data)
                out[start : start + len(data)] = np.frombuffer(raw, "<f4").reshape(len(data), dimensions)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def embed(series: pd.Series, sim, cache_dir: str | None, dimensions: int) -> pd.Series:
    """One embed call; cache_dir=None: without the cache (what the online path costs apart from its writes)."""
    where = {"cache": False} if cache_dir is None else {"cache_dir": cache_dir}
    return series.llm.embed(model=f"openai:{MODEL}", base_url=sim.base_url, api_key=sim.api_key,
                            dimensions=dimensions, progress=False, **where)


def memory(rows: int, dimensions: int, latency: float) -> dict:
    """In this (fresh) process: peak RSS of one uncached embed of rows texts, beyond the baseline with the input
    and the provider's SDK imported (the interpreter as a run finds it; the SDK's import is reported apart)."""
    def rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    series = pd.Series(texts(rows), dtype="string[pyarrow]")
    before_sdk = rss()
    import llmframe.providers.openai  # noqa: F401

    peak, stop = [rss()], threading.Event()
    base = peak[0]

    def sample():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], rss())

    with SimulatorProcess(latency=latency) as sim, tempfile.TemporaryDirectory() as cache:
        threading.Thread(target=sample, daemon=True).start()
        out = embed(series, sim, cache, dimensions)
        stop.set()
    column = rows * dimensions * 4 / 2**20
    return {"rows": rows, "sdk_mb": round(base - before_sdk, 1), "base_mb": round(base, 1), "peak_mb": round(peak[0], 1), "column_mb": round(column, 1),
            "ratio": round((peak[0] - base) / column, 2), "ok": bool(out.notna().all())}


def vector_ops(search_rows: int, left: int, right: int, dimensions: int) -> dict:
    """Median ms per search over search_rows vectors; sim_join left x right at k=5: seconds and peak traced MB."""
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((search_rows, dimensions), dtype=np.float32)
    queries = rng.standard_normal((11, dimensions), dtype=np.float32)
    times, floor = [], []
    for q in queries:  # as df.llm.search: the column's row lengths remembered after the first query
        start = time.perf_counter()
        ops.search(matrix, q, k=10, inverse=ops.remembered_norms(matrix))
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        matrix @ q  # the floor: one read of the matrix, nothing ranked
        floor.append(time.perf_counter() - start)
    frame = pd.DataFrame({"embedding": pd.Series(pd.arrays.ArrowExtensionArray(pa.FixedSizeListArray.from_arrays(
        pa.array(matrix.reshape(-1)), dimensions)))})
    face = []
    for q in queries:  # df.llm.search(vector): the face's Arrow -> numpy view, norms remembered, rows taken
        start = time.perf_counter()
        frame.llm.search(q, k=10)
        face.append(time.perf_counter() - start)
    del frame
    many = []
    for _ in range(3):  # 32 queries at once (df.llm.search with a list): one read of the matrix for all
        start = time.perf_counter()
        ops.search_many(matrix, queries[:1].repeat(32, axis=0), k=10, inverse=ops.remembered_norms(matrix))
        many.append((time.perf_counter() - start) / 32)
    del matrix
    a = rng.standard_normal((left, dimensions), dtype=np.float32)
    b = rng.standard_normal((right, dimensions), dtype=np.float32)
    tracemalloc.start()
    start = time.perf_counter()
    li, _, _ = ops.sim_join(a, b, k=5, threshold=None)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"search_ms": round(statistics.median(times[1:]) * 1000, 1),
            "floor_ms": round(statistics.median(floor[1:]) * 1000, 1),
            "face_ms": round(statistics.median(face[1:]) * 1000, 1),
            "many_ms": round(statistics.median(many) * 1000, 1), "join_s": round(seconds, 2),
            "join_peak_mb": round(peak, 1), "pairs": len(li),
            "inputs_mb": round((a.nbytes + b.nbytes) / 2**20, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--dimensions", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=constants.MAX_CONCURRENCY)
    p.add_argument("--memory-rows", type=int, default=100_000)
    p.add_argument("--search-rows", type=int, default=1_000_000)
    p.add_argument("--join-left", type=int, default=10_000)
    p.add_argument("--join-right", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory", action="store_true", help="only the peak-memory measurement, as JSON")
    args = p.parse_args()
    if args.memory:
        print(json.dumps(memory(args.memory_rows, args.dimensions, args.latency)))
        return
    inputs = texts(args.rows)
    series = pd.Series(inputs, dtype="string[pyarrow]")
    import llmframe.providers.openai  # noqa: F401  (the SDK's import, once per process, is not a row's cost)

    raws, ours, cacheds, bare = [], [], [], []
    pack = pack_size(args.rows, args.concurrency)
    with SimulatorProcess(latency=args.latency) as sim:
        for _ in range(args.repeats):  # interleaved: a burst of load elsewhere hits both clients alike
            with tempfile.TemporaryDirectory() as cache:
                start = time.perf_counter()
                asyncio.run(raw_client(sim.base_url, sim.api_key, inputs, pack, args.concurrency, args.dimensions))
                raws.append(args.rows / (time.perf_counter() - start))
                start = time.perf_counter()
                first = embed(series, sim, cache, args.dimensions)
                ours.append(args.rows / (time.perf_counter() - start))
                start = time.perf_counter()
                embed(series, sim, cache, args.dimensions)
                cacheds.append(args.rows / (time.perf_counter() - start))
                start = time.perf_counter()
                embed(series, sim, None, args.dimensions)
                bare.append(args.rows / (time.perf_counter() - start))
                assert first.notna().all()
    raw, ours_, cached, bare_ = (statistics.median(x) for x in (raws, ours, cacheds, bare))
    ratios = sorted(o / r for o, r in zip(ours, raws))
    mem = json.loads(subprocess.run([sys.executable, __file__, "--memory", "--memory-rows", str(args.memory_rows),
                                     "--dimensions", str(args.dimensions), "--latency", str(args.latency)],
                                    check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    ops_ = vector_ops(args.search_rows, args.join_left, args.join_right, args.dimensions)
    print(f"| measure ({args.rows:,} short texts, {args.dimensions} dimensions, {args.latency * 1000:g} ms latency, "
          f"{pack} inputs per request) | figure | target |")
    print("|---|---|---|")
    print(f"| raw aiohttp, same packs (median of {args.repeats}) | {raw:,.0f} rows/s | – |")
    print(f"| llmframe embed (median of {args.repeats}) | {ours_:,.0f} rows/s ({ours_ / raw:.2f}x raw; per-repeat "
          f"ratios {', '.join(f'{r:.2f}' for r in ratios)}) | >= 0.8x |")
    print(f"| llmframe embed, cache=False (median of {args.repeats}) | {bare_:,.0f} rows/s ({bare_ / raw:.2f}x raw) "
          "| – |")
    print(f"| llmframe cached re-run (median of {args.repeats}) | {cached:,.0f} rows/s | >= 100,000 rows/s |")
    print(f"| peak memory, {mem['rows']:,} rows uncached | {mem['peak_mb'] - mem['base_mb']:.0f} MB beyond the "
          f"baseline (SDK imported: {mem['sdk_mb']:.0f} MB), column {mem['column_mb']:.0f} MB ({mem['ratio']}x) "
          "| <= 1.5x |")
    print(f"| search over {args.search_rows:,} x {args.dimensions} | {ops_['search_ms']} ms per query (median of 10); "
          f"through `df.llm.search` (pandas): {ops_['face_ms']} ms; a bare `m @ q` in the same run: "
          f"{ops_['floor_ms']} ms; 32 queries at once: {ops_['many_ms']} ms per query | < 100 ms |")
    print(f"| sim_join {args.join_left:,} x {args.join_right:,}, k=5 | {ops_['join_s']} s, peak "
          f"{ops_['join_peak_mb']} MB traced (inputs {ops_['inputs_mb']} MB) | report |")


if __name__ == "__main__":
    main()
