"""What the cache costs online: python benchmarks/bench_online_cache.py [--rows 5000] [--concurrency 100] [--repeats 3]

llmframe with its cache, llmframe with cache=False and raw aiohttp (run.py's client) against one simulator at
20 ms, in turns; medians of rows/s and of the process's CPU ms per row, and each as a ratio to raw aiohttp.
Target (issue 28): llmframe with its cache >= 0.9x raw's rows/s, CPU per row <= 1.1x raw's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

SUITE_TITLE = "Online with and without the cache, against raw aiohttp"
SUITE_QUICK = ["--rows", "3000", "--repeats", "1"]


def measure(rows: int, concurrency: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    """rows/s and CPU ms per row of each client, repeats in turns."""
    import bench_core
    import run as suite
    from llmframe.testing import SimulatorProcess

    frame, texts = bench_core.make_frame(rows), bench_core.prompts(rows)
    tmp = tempfile.mkdtemp()

    def llmframe(sim, name: str, cache: bool = True):
        return frame.llm.generate(bench_core.TEMPLATE, model=f"openai:{bench_core.MODEL}", base_url=sim.base_url,
                                  api_key=sim.api_key, max_concurrency=concurrency, cache_dir=f"{tmp}/{name}",
                                  progress=False, cache=cache)

    clients = {"llmframe": lambda sim, r: llmframe(sim, f"c{r}"),
               "cache=False": lambda sim, r: llmframe(sim, f"n{r}", cache=False),
               "raw aiohttp": lambda sim, r: suite.run_raw_aiohttp(texts, sim, concurrency)}
    stats = {name: {"rps": [], "cpu": []} for name in clients}
    with SimulatorProcess(latency=0.02, max_seconds=3600) as sim:
        llmframe(sim, "warm")  # imports, the loop, first connections
        suite.run_raw_aiohttp(texts[:200], sim, concurrency)
        for r in range(repeats):
            for name, client in clients.items():
                _, wall, cpu = bench_core.timed(client, sim, r)
                stats[name]["rps"].append(rows / wall)
                stats[name]["cpu"].append(cpu * 1000 / rows)
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stats = measure(args.rows, args.concurrency, args.repeats)
    med = statistics.median
    raw_rps, raw_cpu = med(stats["raw aiohttp"]["rps"]), med(stats["raw aiohttp"]["cpu"])
    print(f"{args.rows:,} rows, 20 ms, {args.concurrency} in flight, medians of {args.repeats}\n")
    print("| client | rows/s | CPU ms/row | rows/s / raw | CPU / raw |\n|---|---|---|---|---|")
    for name, s in stats.items():
        rps, cpu = med(s["rps"]), med(s["cpu"])
        print(f"| {name} | {rps:,.0f} | {cpu:.3f} | {rps / raw_rps:.2f}x | {cpu / raw_cpu:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
