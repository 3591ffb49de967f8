"""Rate-limited efficiency: a server limit of R requests per minute that the client is not told about.

python benchmarks/bench_ratelimit.py [--rpm 6000] [--minutes 2.5] [--burst-seconds 60] [--latency 0.05]

The simulator runs in its own process and enforces R per API key with OpenAI's headers and real
Retry-After; llmframe gets no rpm= and must learn the limit from the replies. The server's counts
are sampled every second, so the steady state (after the first minute) is measured on its own.
Targets: >= 0.9 R after the first minute, and 429s under 2% of requests.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pandas as pd  # noqa: E402

import llmframe  # noqa: E402,F401  (registers df.llm)
from llmframe.testing import SimulatorProcess  # noqa: E402


def parse_args() -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rpm", type=int, default=6000, help="the server's limit per API key")
    p.add_argument("--minutes", type=float, default=2.5, help="rows = rpm x minutes")
    p.add_argument("--burst-seconds", type=float, default=60.0, help="how much of the limit the server lets burst")
    p.add_argument("--latency", type=float, default=0.05, help="simulated seconds per answer")
    p.add_argument("--concurrency", type=int, default=64)
    return p.parse_args()


def sample(sim: SimulatorProcess, samples: list, stop: threading.Event) -> None:
    """(seconds since start, answered, 429s) once a second, from the server's own counts."""
    start = time.monotonic()
    while not stop.wait(1.0):
        stats = sim.stats()["statuses"]
        samples.append((time.monotonic() - start, stats.get("200", 0), stats.get("429", 0)))


def main() -> int:
    """Run once and print the markdown table."""
    args = parse_args()
    rows = int(args.rpm * args.minutes)
    frame = pd.DataFrame({"i": range(rows)})
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()
    with SimulatorProcess(latency=args.latency, rpm=args.rpm, burst_seconds=args.burst_seconds, max_seconds=3600) as sim:
        sampler = threading.Thread(target=sample, args=(sim, samples, stop), daemon=True)
        sampler.start()
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as cache_dir:
            out = frame.llm.generate("Row {i}", model="openai:sim-model", base_url=sim.base_url, api_key=sim.api_key,
                                     max_concurrency=args.concurrency, cache_dir=cache_dir, progress=False)
        wall = time.monotonic() - started
        stop.set()
        sampler.join()
        final = sim.stats()["statuses"]
    report = out.attrs["llmframe"]
    assert report["failed"] == 0 and out["response"].notna().all(), report
    answered, limited = final.get("200", 0), final.get("429", 0)
    per_second = args.rpm / 60
    after = [s for s in samples if s[0] >= 60]
    if len(after) >= 2:
        steady = (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])
    else:
        steady = float("nan")
    first_minute = next((s[1] for s in samples if s[0] >= 60), answered) / 60
    share_429 = limited / (answered + limited)
    print(f"Command: `{shlex.join(['python', f'benchmarks/{Path(__file__).name}', *sys.argv[1:]])}`\n")
    print(f"Machine: {platform.platform()}; Python {platform.python_version()}\n")
    print("| Measure | Value | Target | Result |")
    print("|---|---|---|---|")
    print(f"| Server limit R | {args.rpm:,} rpm ({per_second:,.0f}/s), burst {args.burst_seconds:g} s | – | – |")
    print(f"| Rows | {rows:,} in {wall:.0f} s | – | – |")
    print(f"| Throughput, first minute | {first_minute:,.1f}/s = {first_minute / per_second:.2f} R | – | – |")
    print(f"| Throughput after the first minute | {steady:,.1f}/s = {steady / per_second:.2f} R | >= 0.9 R | "
          f"{'met' if steady / per_second >= 0.9 else 'NOT met'} |")
    print(f"| 429s | {limited:,} of {answered + limited:,} requests = {share_429:.2%} | < 2% | "
          f"{'met' if share_429 < 0.02 else 'NOT met'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
