"""Peak memory of one generate call, in a fresh process: python benchmarks/memory.py --rows N --mode cached|uncached

Prints one JSON line: the RSS of the bare interpreter with llmframe, pandas and the SDKs imported
(before any data exists), the RSS before the call (that plus the input frame), the peak RSS, the
peak of anonymous memory (RSS less file-backed pages such as the cache's memory-mapped SQLite file,
sampled every 20 ms), and the in-memory size of the input and output frames, so the suite can
compare what the data costs with the size of the data.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import llmframe  # noqa: E402,F401  (registers df.llm)
from benchmarks.bench_core import TEMPLATE, fill_cache, make_frame  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402


def rss_mb() -> float:
    """Current resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def anon_mb() -> float:
    """Current anonymous resident memory (heap, not file-backed pages)."""
    return status_mb("RssAnon")


class AnonPeak:
    """Samples anonymous memory in a thread; ru_maxrss has no anonymous-only twin."""

    def __init__(self) -> None:
        self.peak = anon_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, anon_mb())

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anon_mb())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=("cached", "uncached"), default="cached")
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    import openai  # noqa: F401  (imported by the first call anyway: part of the interpreter's fixed cost)

    baseline = rss_mb()
    frame = make_frame(args.rows)
    with SimulatorProcess(latency=0.0, max_seconds=3600) as sim, tempfile.TemporaryDirectory() as cache_dir:
        if args.mode == "cached":
            fill_cache(frame, sim, cache_dir)
        before = rss_mb()
        start = time.perf_counter()
        with AnonPeak() as anon:
            out = frame.llm.generate(TEMPLATE, model="openai:sim-model", base_url=sim.base_url, api_key=sim.api_key,
                                     max_concurrency=args.concurrency, cache_dir=cache_dir, progress=False)
        seconds = time.perf_counter() - start
        assert out["response"].notna().all(), out.attrs["llmframe"]
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec, so a
    # child of a large process (the suite) would report its parent's peak.
    peak = status_mb("VmHWM")
    print(json.dumps({
        "rows": args.rows,
        "mode": args.mode,
        "seconds": round(seconds, 1),
        "baseline_mb": round(baseline, 1),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_anon_mb": round(anon.peak, 1),
        "input_mb": round(frame.memory_usage(deep=True).sum() / 2**20, 1),
        "output_mb": round(out.memory_usage(deep=True).sum() / 2**20, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
