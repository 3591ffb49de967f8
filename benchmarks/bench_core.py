"""Core benchmark: llmframe vs a hand-written openai+asyncio client, and a large cached re-run.

python benchmarks/bench_core.py [--rows 5000] [--concurrency 100] [--latency 0.02]
                                [--cached-rows 100000] [--repeats 3]

Prints a markdown table for benchmarks/RESULTS.md. The simulator runs in a child process, so
its CPU is not the client's; the server's own ceiling is measured first to show it is not the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import aiohttp  # noqa: E402
import diskcache  # noqa: E402
import httpx2  # noqa: E402
import openai  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

import llmframe  # noqa: E402,F401  (registers the df.llm accessor)
from llmframe.engine.run import open_cache  # noqa: E402
from llmframe.faces.frames import rows_of  # noqa: E402
from llmframe.faces.planning import plan  # noqa: E402
from llmframe.plan.request import Response  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402

MODEL = "sim-model"
TEMPLATE = "Summarise row {i}: {text}"
TEXT = "the quarterly report shows steady growth in three regions and a small decline in one"


def parse_args() -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5000, help="rows in the online scenario")
    p.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    p.add_argument("--latency", type=float, default=0.02, help="simulated seconds per request")
    p.add_argument("--cached-rows", type=int, default=100_000, help="rows in the cached re-run")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each scenario")
    return p.parse_args()


def make_frame(n: int) -> pd.DataFrame:
    """n rows whose rendered prompts are all distinct.

    Built in Arrow, as read_parquet builds a frame: from a Python list of a million strings, pandas
    leaves 150 MB or more of allocator slack that is not the frame's, and would count as ours.
    """
    text = pa.array([TEXT], pa.large_string()).take(pa.array(np.zeros(n, dtype=np.int64)))
    return pd.DataFrame({"i": np.arange(n), "text": pd.array(text, dtype=pd.StringDtype("pyarrow", na_value=np.nan))})


def prompts(n: int) -> list[str]:
    """The prompts make_frame(n) renders to under TEMPLATE, for the baseline."""
    return [TEMPLATE.format(i=i, text=TEXT) for i in range(n)]


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def server_ceiling(requests: int = 3000, concurrency: int = 200) -> float:
    """Requests/s a raw aiohttp client gets from a latency-0 simulator (a lower bound on its ceiling)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "ping"}]}

    async def go(url: str, key: str) -> None:
        sem = asyncio.Semaphore(concurrency)
        conn = aiohttp.TCPConnector(limit=concurrency)
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
            async def one() -> None:
                async with sem, session.post(url, json=body) as resp:
                    resp.raise_for_status()
                    await resp.read()

            await asyncio.gather(*(one() for _ in range(requests)))

    with SimulatorProcess(latency=0.0, max_seconds=600) as sim:
        url = sim.base_url + "/chat/completions"
        asyncio.run(go(url, sim.api_key))  # warm-up: connections, imports
        _, wall, _ = timed(asyncio.run, go(url, sim.api_key))
        assert sim.count == 2 * requests
    return requests / wall


def import_seconds(module: str, repeats: int = 5) -> float:
    """Median wall seconds of `python -c "import <module>"` in a fresh interpreter."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_llmframe(frame: pd.DataFrame, sim: SimulatorProcess, concurrency: int, cache_dir: str) -> pd.DataFrame:
    """One df.llm.generate call against the simulator."""
    return frame.llm.generate(TEMPLATE, model=f"openai:{MODEL}", base_url=sim.base_url, api_key=sim.api_key,
                              max_concurrency=concurrency, cache_dir=cache_dir, progress=False)


def run_baseline(texts: list[str], sim: SimulatorProcess, concurrency: int) -> list[str]:
    """The hand-written client: AsyncOpenAI + Semaphore + gather, under asyncio.run."""

    async def go() -> list[str]:
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        # A generous connect timeout: at 1,000 in flight the SDK's 5 s default fails before the pool fills.
        timeout = httpx2.Timeout(600, connect=120)
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=sim.api_key,
                                    http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout))
        sem = asyncio.Semaphore(concurrency)

        async def one(prompt: str) -> str:
            async with sem:
                reply = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt}])
                return reply.choices[0].message.content

        try:
            return await asyncio.gather(*(one(p) for p in texts))
        finally:
            await client.close()

    return asyncio.run(go())


def online(args: argparse.Namespace, sim: SimulatorProcess, tmp: Path) -> dict[str, dict[str, list[float]]]:
    """Interleaved repeats of llmframe and the baseline: rows/s and CPU seconds per repeat."""
    n, c = args.rows, args.concurrency
    frame, texts = make_frame(n), prompts(n)
    warm = min(n, 500)  # warm-up: imports, the background loop, first connections
    run_llmframe(frame.head(warm), sim, c, str(tmp / "warm"))
    run_baseline(texts[:warm], sim, c)
    stats = {name: {"rps": [], "cpu": []} for name in ("llmframe", "baseline")}
    for r in range(args.repeats):
        out, wall, cpu = timed(run_llmframe, frame, sim, c, str(tmp / f"online-{r}"))
        report = out.attrs["llmframe"]
        assert report["requests_sent"] == n and report["failed"] == 0, report
        assert out["response"].notna().all()
        stats["llmframe"]["rps"].append(n / wall)
        stats["llmframe"]["cpu"].append(cpu)
        answers, wall, cpu = timed(run_baseline, texts, sim, c)
        assert len(answers) == n and all(answers)
        stats["baseline"]["rps"].append(n / wall)
        stats["baseline"]["cpu"].append(cpu)
        print(f"  online repeat {r + 1}: llmframe {stats['llmframe']['rps'][-1]:,.0f} rows/s, "
              f"baseline {stats['baseline']['rps'][-1]:,.0f} rows/s", file=sys.stderr)
    return stats


def fill_cache(frame: pd.DataFrame, sim: SimulatorProcess, cache_dir: str, chunk: int = 10_000) -> list[str]:
    """Write an answer for every row straight into the cache, via llmframe's own keys; returns the answers."""
    run = plan(rows_of(frame), TEMPLATE, model=f"openai:{MODEL}", base_url=sim.base_url, api_key=sim.api_key,
               cache_dir=cache_dir, progress=False)
    assert len(run.keys) == len(frame), "prompts must be distinct"
    answers = [f"cached answer {j}" for j in range(len(run.keys))]
    store = open_cache(run)
    for start in range(0, len(run.keys), chunk):
        store.set_many([
            (key, Response(text=answers[j], input_tokens=1, output_tokens=1, finish_reason="stop").to_cache(f"openai:{MODEL}", time.time()))
            for j, key in enumerate(run.keys[start:start + chunk], start)
        ])
    return answers  # keys are in first-seen row order, and every row is distinct: answers[i] is row i's


def cached(args: argparse.Namespace, sim: SimulatorProcess, tmp: Path) -> list[float]:
    """Rows/s of full generate calls answered entirely from a pre-filled cache."""
    m, cache_dir = args.cached_rows, str(tmp / "cached")
    frame = make_frame(m)
    _, fill_wall, _ = timed(fill_cache, frame, sim, cache_dir)
    expected = [f"cached answer {j}" for j in range(m)]  # values: the column's string dtype is pandas' own choice
    print(f"  cache filled with {m:,} answers in {fill_wall:.1f} s", file=sys.stderr)
    before = sim.count
    rates = []
    os.environ["LLMFRAME_MEMO"] = "0"  # the per-row path: the run memo has its own scenario (bench_memo.py)
    for r in range(args.repeats):
        out, wall, _ = timed(run_llmframe, frame, sim, args.concurrency, cache_dir)
        report = out.attrs["llmframe"]
        assert report["cached"] == m and report["requests_sent"] == 0, report
        assert out["response"].tolist() == expected
        rates.append(m / wall)
        print(f"  cached repeat {r + 1}: {rates[-1]:,.0f} rows/s ({wall:.2f} s)", file=sys.stderr)
    os.environ.pop("LLMFRAME_MEMO", None)
    assert sim.count == before, f"the simulator saw {sim.count - before} requests during cached runs"
    return rates


def spread(values: list[float]) -> str:
    """'median (min–max)' of rates."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def table(args, ceiling: float, stats: dict, rates: list[float], imports: dict[str, float]) -> str:
    """The markdown results table."""
    n = args.rows
    lf, bl = stats["llmframe"], stats["baseline"]
    ratio = statistics.median(lf["rps"]) / statistics.median(bl["rps"])
    overlap = max(lf["rps"]) >= min(bl["rps"])
    verdict = "met" if ratio >= 1 else "met within noise (ranges overlap)" if overlap else "NOT met"
    cached_median = statistics.median(rates)
    ideal = args.concurrency / args.latency
    lines = [
        f"Command: `{shlex.join(['python', f'benchmarks/{Path(__file__).name}', *sys.argv[1:]])}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}; Python {platform.python_version()}; "
        f"pandas {pd.__version__}, openai {openai.__version__}, diskcache {diskcache.__version__}",
        "",
        "| Scenario | rows/s, median (min–max) | CPU s / 1,000 rows | Target | Result |",
        "|---|---|---|---|---|",
        f"| Simulator ceiling (raw aiohttp, 200 in flight, latency 0) | {ceiling:,.0f} req/s | – | "
        f"well above the client rates | – |",
        f"| Online, llmframe ({n:,} rows, {args.concurrency} in flight, {args.latency * 1000:g} ms; "
        f"ideal {ideal:,.0f}) | {spread(lf['rps'])} | {1000 * statistics.median(lf['cpu']) / n:.2f} | "
        f"llmframe/baseline >= 1 within noise | {ratio:.2f}, {verdict} |",
        f"| Online, hand-written AsyncOpenAI + Semaphore + gather | {spread(bl['rps'])} | "
        f"{1000 * statistics.median(bl['cpu']) / n:.2f} | – | – |",
        f"| Cached re-run ({args.cached_rows:,} rows, full generate call) | {spread(rates)} | – | "
        f">= 50,000 rows/s | {'met' if cached_median >= 50_000 else 'NOT met'} |",
        f"| `python -c \"import llmframe\"` (pandas alone: {imports['pandas']:.2f} s) | "
        f"{imports['llmframe']:.2f} s | – | no provider SDK imported; little beyond pandas | – |",
        "",
        f"Repeats: {args.repeats}, interleaved llmframe/baseline. CPU is time.process_time of the client "
        "process (all threads); the simulator runs in a child process.",
    ]
    return "\n".join(lines)


def main() -> int:
    """Run every scenario and print the table."""
    args = parse_args()
    imports = {module: import_seconds(module) for module in ("pandas", "llmframe")}
    print("measuring the simulator's ceiling ...", file=sys.stderr)
    ceiling = server_ceiling()
    print(f"  {ceiling:,.0f} req/s", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="llmframe-bench-"))
    try:
        with SimulatorProcess(latency=args.latency, max_seconds=3600) as sim:
            print("online scenario ...", file=sys.stderr)
            stats = online(args, sim, tmp)
            print("cached scenario ...", file=sys.stderr)
            rates = cached(args, sim, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(args, ceiling, stats, rates, imports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
