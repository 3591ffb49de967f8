"""Polars against pandas, the same call on the same rows, interleaved in one run (issue 20).

python benchmarks/bench_polars.py [--quick]   (the suite runs it as `python benchmarks/run.py --only polars`)

Cached re-runs at 100,000 and 1,000,000 rows (one cache, filled once with pandas' keys: the Polars runs
prove the keys are shared by sending nothing), the peak memory of a 1,000,000-row uncached run in a fresh
process per face, and online rows/s at 20 ms and 100 in flight. Prints a markdown table; ratios are
Polars / pandas of pairs measured back to back, so a loaded machine slows both sides alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402

import llmframe  # noqa: E402,F401  (registers both faces once their libraries are imported)
from benchmarks.bench_core import MODEL, TEMPLATE, TEXT, fill_cache, make_frame, timed  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402

FACES = ("pandas", "polars")


def polars_frame(rows: int) -> pl.DataFrame:
    """make_frame's rows as a Polars frame, built from Arrow as pl.read_parquet builds one (no pandas)."""
    text = pa.array([TEXT], pa.large_string()).take(pa.array(np.zeros(rows, dtype=np.int64)))
    return pl.DataFrame({"i": np.arange(rows), "text": pl.Series(text)})


def frames(rows: int, faces: tuple[str, ...] = FACES) -> dict:
    """The same rows on the faces asked for."""
    makers = {"pandas": make_frame, "polars": polars_frame}
    return {face: makers[face](rows) for face in faces}


def generate(frame, sim: SimulatorProcess, cache_dir: str):
    """One generate call on either face; returns the output and its report."""
    out = frame.llm.generate(TEMPLATE, model=f"openai:{MODEL}", base_url=sim.base_url, api_key=sim.api_key,
                             max_concurrency=100, cache_dir=cache_dir, progress=False)
    return out, out.llm.report


def cached(rows: int, repeats: int, tmp: Path) -> dict[str, list[float]]:
    """Rows/s of fully cached calls, pandas and Polars alternating, over one cache filled with pandas' keys."""
    both, cache_dir = frames(rows), str(tmp / f"cached-{rows}")
    rates = {face: [] for face in FACES}
    with SimulatorProcess(latency=0.0, max_seconds=3600) as sim:
        fill_cache(both["pandas"], sim, cache_dir)
        for r in range(repeats):
            for face in FACES if r % 2 == 0 else FACES[::-1]:
                (out, report), wall, _ = timed(generate, both[face], sim, cache_dir)
                assert report["cached"] == rows and report["requests_sent"] == 0, (face, report)
                rates[face].append(rows / wall)
            print(f"  cached {rows:,} repeat {r + 1}: " + ", ".join(f"{f} {rates[f][-1]:,.0f}/s" for f in FACES),
                  file=sys.stderr)
        assert sim.count == 0, "a cached run sent requests"
    return rates


def online(rows: int, repeats: int, tmp: Path) -> dict[str, list[float]]:
    """Rows/s of uncached calls at 20 ms and 100 in flight, pandas and Polars alternating, each with a new cache."""
    both = frames(rows)
    rates = {face: [] for face in FACES}
    with SimulatorProcess(latency=0.02, max_seconds=3600) as sim:
        for face in FACES:  # warm-up: imports, the loop, first connections
            generate(both[face].head(300), sim, str(tmp / f"warm-{face}"))
        for r in range(repeats):
            for face in FACES if r % 2 == 0 else FACES[::-1]:
                (out, report), wall, _ = timed(generate, both[face], sim, str(tmp / f"online-{face}-{r}"))
                assert report["requests_sent"] == rows and report["failed"] == 0, (face, report)
                rates[face].append(rows / wall)
            print(f"  online {rows:,} repeat {r + 1}: " + ", ".join(f"{f} {rates[f][-1]:,.0f}/s" for f in FACES),
                  file=sys.stderr)
    return rates


def memory_child(face: str, rows: int) -> None:
    """In a fresh process: one uncached call on this face; prints its memory figures as one JSON line."""
    from benchmarks.memory import AnonPeak, rss_mb, status_mb
    import openai  # noqa: F401  (imported by the first call anyway: part of the interpreter's fixed cost)

    baseline = rss_mb()
    frame = frames(rows, (face,))[face]  # only this face's frame in this process
    with SimulatorProcess(latency=0.0, max_seconds=3600) as sim, tempfile.TemporaryDirectory() as cache_dir:
        before, start = rss_mb(), time.perf_counter()
        with AnonPeak() as anon:
            out, report = generate(frame, sim, cache_dir)
        seconds = time.perf_counter() - start
        assert report["requests_sent"] == rows and report["failed"] == 0, report
    size = (lambda f: f.memory_usage(deep=True).sum()) if face == "pandas" else (lambda f: f.estimated_size())
    print(json.dumps({"face": face, "rows": rows, "seconds": round(seconds, 1), "baseline_mb": round(baseline, 1),
                      "rss_before_mb": round(before, 1), "peak_rss_mb": round(status_mb("VmHWM"), 1),
                      "peak_anon_mb": round(anon.peak, 1), "frames_mb": round((size(frame) + size(out)) / 2**20, 1)}))


def memory(rows: int) -> list[dict]:
    """The peak of one uncached run per face, each in a fresh process, one after the other."""
    results = []
    for face in FACES:
        done = subprocess.run([sys.executable, __file__, "--memory-child", face, "--rows", str(rows)],
                              capture_output=True, text=True, timeout=3600, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  memory {results[-1]}", file=sys.stderr)
    return results


def ratio(rates: dict[str, list[float]]) -> str:
    """Median of Polars / pandas over the pairs measured back to back."""
    return f"{statistics.median(p / q for p, q in zip(rates['polars'], rates['pandas'])):.2f}"


def table(sections: dict, command: str) -> str:
    """The markdown for benchmarks/RESULTS.md."""
    spread = lambda v: f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})"  # noqa: E731
    lines = [f"Command: `{command}` ({time.strftime('%Y-%m-%d')}; pandas {pd.__version__}, polars {pl.__version__})",
             "", "| scenario | rows | pandas rows/s, median (min–max) | Polars rows/s | Polars / pandas (median of pairs) "
             "| target |", "|---|---|---|---|---|---|"]
    for rows, rates in sections["cached"].items():
        lines.append(f"| cached re-run | {rows:,} | {spread(rates['pandas'])} | {spread(rates['polars'])} | "
                     f"{ratio(rates)} | >= 1 |")
    rates = sections["online"]
    lines.append(f"| online, 20 ms, 100 in flight | {sections['online_rows']:,} | {spread(rates['pandas'])} | "
                 f"{spread(rates['polars'])} | {ratio(rates)} | within noise of 1 |")
    lines += ["", "| peak memory, uncached | rows | seconds | baseline, MB | peak RSS, MB | peak − baseline, MB "
              "| peak anonymous, MB | input + output frames, MB |", "|---|---|---|---|---|---|---|---|"]
    for m in sections["memory"]:
        lines.append(f"| {m['face']} | {m['rows']:,} | {m['seconds']} | {m['baseline_mb']} | {m['peak_rss_mb']} | "
                     f"{m['peak_rss_mb'] - m['baseline_mb']:.1f} | {m['peak_anon_mb']} | {m['frames_mb']} |")
    pandas_run, polars_run = sections["memory"]
    lines += ["", f"Peak RSS, Polars / pandas: {polars_run['peak_rss_mb'] / pandas_run['peak_rss_mb']:.2f} "
              f"(above each baseline: {(polars_run['peak_rss_mb'] - polars_run['baseline_mb']) / (pandas_run['peak_rss_mb'] - pandas_run['baseline_mb']):.2f}); "
              "target: no more than pandas."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000-row cached and memory runs, one repeat pair")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per face (default 3; --quick 2)")
    parser.add_argument("--memory-rows", type=int, default=None, help="rows of the uncached memory runs "
                        "(default 1,000,000; --quick 100,000)")
    parser.add_argument("--memory-child", choices=FACES, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=1_000_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.rows)
        return 0
    repeats = args.repeats or (2 if args.quick else 3)
    big = 100_000 if args.quick else 1_000_000
    tmp = Path(tempfile.mkdtemp(prefix="llmframe-polars-"))
    sections: dict = {"online_rows": 3_000 if args.quick else 10_000}
    sections["online"] = online(sections["online_rows"], repeats, tmp)
    sections["cached"] = {rows: cached(rows, repeats, tmp) for rows in dict.fromkeys((100_000, big))}
    sections["memory"] = memory(args.memory_rows or big)
    print(table(sections, " ".join(["python", "benchmarks/bench_polars.py", *sys.argv[1:]])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
