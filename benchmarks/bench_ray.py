"""llmframe.ray on a local cluster vs one process, and the two ways to share a rate limit among actors.

python benchmarks/bench_ray.py [--rows 20000] [--actors 2] [--latency 0.1] [--rpm 3000]

1. Throughput: the same rows against a simulator whose latency makes the job I/O-bound, once with
   df.llm.generate in this process, once with llmframe.ray.generate on `--actors` actors (each with
   the same max_concurrency). Rows/s of the whole job (Ray's actor start-up included) and of the
   steady state (first batch start to last batch end, from the run report), and their ratio.
2. Budget: rpm=R for the cluster against a server that enforces R (one second of burst): the
   shared budget actor vs the budget split evenly among actors; the server's 429s and the rate it
   saw while the job was in full swing (10% to 90% of the requests).
Prints a markdown section. Needs `pip install 'llmframe[ray]'`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pandas as pd  # noqa: E402

import llmframe  # noqa: E402,F401  (registers df.llm)
from llmframe.testing import SimulatorProcess  # noqa: E402

MODEL = "openai:sim-model"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--latency", type=float, default=0.1, help="seconds per answer: the job waits, not computes")
    p.add_argument("--concurrency", type=int, default=64, help="max_concurrency of each process")
    p.add_argument("--rpm", type=int, default=3000, help="the cluster's limit in the budget comparison")
    p.add_argument("--budget-seconds", type=float, default=15.0, help="rows = rpm x this / 60 in that comparison")
    return p.parse_args()


def write_parquet(directory: Path, frame: pd.DataFrame, files: int) -> str:
    directory.mkdir(parents=True)
    step = -(-len(frame) // files)
    for i in range(files):
        frame.iloc[i * step:(i + 1) * step].to_parquet(directory / f"part-{i}.parquet", index=False)
    return str(directory)


def throughput(args, tmp: Path) -> dict:
    import ray
    import llmframe.ray as lray

    frame = pd.DataFrame({"text": [f"bench row {i}" for i in range(args.rows)]})
    blocks = args.actors * 4
    source = write_parquet(tmp / "in", frame, blocks)
    with SimulatorProcess(latency=args.latency, max_seconds=3600) as sim:
        kwargs = dict(model=MODEL, base_url=sim.base_url, api_key=sim.api_key, max_concurrency=args.concurrency)
        started = time.perf_counter()
        pd.read_parquet(source).llm.generate("{text}", cache_dir=str(tmp / "single"), progress=False, **kwargs)
        single = args.rows / (time.perf_counter() - started)
        started = time.perf_counter()
        ds = lray.generate(ray.data.read_parquet(source, override_num_blocks=blocks), "{text}",
                           concurrency=args.actors, batch_size=-(-args.rows // blocks), cache_dir=str(tmp / "ray"),
                           **kwargs)
        ds.materialize()
        whole = args.rows / (time.perf_counter() - started)
        steady = args.rows / lray.report(ds)["seconds"]
    return {"single": single, "ray": whole, "ray_steady": steady}


def budget(args, tmp: Path, how: str) -> dict:
    import ray
    import llmframe.ray as lray

    rows = int(args.rpm * args.budget_seconds / 60)
    blocks = args.actors * 2 + 1  # uneven on purpose: real jobs rarely split into equal shares
    frame = pd.DataFrame({"text": [f"{how} row {i}" for i in range(rows)]})
    source = write_parquet(tmp / f"in-{how}", frame, blocks)
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    with SimulatorProcess(latency=0.02, rpm=args.rpm, burst_seconds=1.0, max_seconds=3600) as sim:

        def sample() -> None:
            while not done.is_set():
                samples.append((time.monotonic(), sim.count))
                done.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ds = lray.generate(ray.data.read_parquet(source, override_num_blocks=blocks), "{text}", model=MODEL,
                           base_url=sim.base_url, api_key=sim.api_key, concurrency=args.actors, rpm=args.rpm,
                           budget=how, batch_size=-(-rows // blocks), cache_dir=str(tmp / f"cache-{how}"))
        ds.materialize()
        done.set()
        sampler.join(5)
        stats = sim.stats()
    sent = stats["count"]
    start = next(t for t, n in samples if n >= sent * 0.1)
    end = next(t for t, n in samples if n >= sent * 0.9)
    return {"rows": rows, "requests": sent, "429": stats["faults"].get("rpm", 0),
            "rate": sent * 0.8 / (end - start) * 60, "seconds": lray.report(ds)["seconds"]}


def main() -> int:
    args = parse_args()
    try:
        import ray
    except ImportError:
        print("## Ray\n\nskipped: ray is not installed (pip install 'llmframe[ray]')")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="llmframe-ray-bench-"))
    for attempt in range(3):  # Ray gives its raylet a fixed 30 s to start, too little on a busy machine
        try:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, object_store_memory=300 * 2**20,
                     log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        t = throughput(args, tmp)
        b = {how: budget(args, tmp, how) for how in ("shared", "split")}
    finally:
        ray.shutdown()
    lines = [
        f"Command: `python benchmarks/bench_ray.py {' '.join(sys.argv[1:])}` ({time.strftime('%Y-%m-%d')}); "
        f"{os.cpu_count()} CPUs, Ray {ray.__version__}, simulator in its own process.",
        "",
        f"Throughput, {args.rows:,} rows, {args.latency * 1000:g} ms per answer, {args.concurrency} in flight per process:",
        "",
        "| run | rows/s | vs one process |",
        "|---|---|---|",
        f"| one process (df.llm.generate) | {t['single']:,.0f} | 1.00 |",
        f"| Ray, {args.actors} actors, whole job (start-up included) | {t['ray']:,.0f} | {t['ray'] / t['single']:.2f} |",
        f"| Ray, {args.actors} actors, steady state (first batch to last) | {t['ray_steady']:,.0f} | "
        f"{t['ray_steady'] / t['single']:.2f} |",
        "",
        f"Budget, rpm={args.rpm:,} for the cluster, server enforcing {args.rpm:,} (1 s burst), {args.actors} actors:",
        "",
        "| budget | rows | 429s | rate at the server, 10%-90% of requests | vs the limit |",
        "|---|---|---|---|---|",
    ]
    for how, r in b.items():
        lines.append(f"| {how} | {r['rows']:,} | {r['429']} | {r['rate']:,.0f} rpm | {r['rate'] / args.rpm:.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
