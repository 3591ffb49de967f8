"""The run memo against the per-row cache and Bespoke Curator's whole-run cache, in one run (issue 28).

python benchmarks/bench_memo.py [--rows 10000,100000] [--repeats 5] [--quick]

For each size: Curator's cached re-runs (its own script in its venv, benchmarks/peers: the same LLM object
called again, and a new one, as a re-run notebook cell makes), then llmframe over one cache filled through its
own keys: the first call (per-row path, writes the memo), then `repeats` memo re-runs interleaved with as many
per-row re-runs (LLMFRAME_MEMO=0), then a call with one row changed (must send that row alone) and the same call
again. Targets: memo >= 10x Curator's whole-run cache; a one-row change sends one request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUITE_TITLE = "Cached re-runs: the run memo, the per-row cache and Curator's whole-run cache (one run)"
SUITE_QUICK = ["--quick"]

from benchmarks import bench_core  # noqa: E402


def curator(rows: int) -> list[dict]:
    """Curator's cached lines (rows/s), or one line saying why it was not measured."""
    from llmframe.testing import SimulatorProcess

    try:
        from benchmarks.peers.harness import run_peer

        with SimulatorProcess(latency=0.0, max_seconds=3600) as sim:
            lines = run_peer("curator", sim.base_url, sim.api_key, rows, 100, cached=True, timeout=3600)
        return [line for line in lines if line.get("cached")]
    except Exception as exc:  # a peer that cannot run is reported, not fatal
        return [{"error": str(exc).splitlines()[0][:160]}]


def llmframe_runs(rows: int, repeats: int) -> dict:
    """Memo and per-row re-runs interleaved, then a one-row change; rows/s and what was sent."""
    from llmframe.testing import SimulatorProcess

    frame = bench_core.make_frame(rows)
    out: dict = {"memo": [], "per_row": []}
    with SimulatorProcess(latency=0.0, max_seconds=3600) as sim, tempfile.TemporaryDirectory() as cache:
        bench_core.fill_cache(frame, sim, cache)
        first = bench_core.run_llmframe(frame, sim, 100, cache)  # the per-row path, which writes the memo
        assert first.attrs["llmframe"]["requests_sent"] == 0
        for _ in range(repeats):
            for kind in ("memo", "per_row"):
                os.environ["LLMFRAME_MEMO"] = "1" if kind == "memo" else "0"
                try:
                    start = time.perf_counter()
                    again = bench_core.run_llmframe(frame, sim, 100, cache)
                    out[kind].append(rows / (time.perf_counter() - start))
                finally:
                    os.environ.pop("LLMFRAME_MEMO", None)
                report = again.attrs["llmframe"]
                assert report["requests_sent"] == 0 and report.get("memo_rows", 0) == (rows if kind == "memo" else 0)
        changed = frame.copy()
        changed.loc[rows // 2, "text"] = "one changed row"
        before = sim.count
        start = time.perf_counter()
        report = bench_core.run_llmframe(changed, sim, 100, cache).attrs["llmframe"]
        out["change_s"], out["change_sent"] = time.perf_counter() - start, sim.count - before
        out["change_memo_rows"] = report["memo_rows"]
        start = time.perf_counter()
        bench_core.run_llmframe(changed, sim, 100, cache)
        out["after_change"] = rows / (time.perf_counter() - start)
    return out


def table(results: dict) -> str:
    """The markdown table of every size's figures."""
    lines = ["| rows | llmframe, run memo: rows/s, median (min–max) | llmframe, per-row cache | Curator, whole-run "
             "cache (same LLM; new LLM) | memo / Curator | one row changed: time, requests sent, rows from the memo "
             "| target |", "|---|---|---|---|---|---|---|"]
    for rows, r in results.items():
        memo = statistics.median(r["memo"])
        cur = [c["rows_per_s"] for c in r["curator"] if "rows_per_s" in c]
        curator_text = "; ".join(f"{c:,.0f}" for c in cur) if cur else f"not measured: {r['curator'][0]['error']}"
        ratio = f"{memo / max(cur):.1f}x" if cur else "–"
        lines.append(f"| {rows:,} | {bench_core.spread(r['memo'])} | {bench_core.spread(r['per_row'])} "
                     f"| {curator_text} "
                     f"| {ratio} | {r['change_s'] * 1000:.0f} ms, {r['change_sent']}, {r['change_memo_rows']:,} "
                     f"| >= 10x, 1 request |")
    return "\n".join(lines) + ("\n\nmemo / Curator is against the faster of Curator's two cached runs. Machine load "
                               "varies between repeats: the ratio is of one run, side by side.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000", help="comma-separated sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 3 repeats")
    args = parser.parse_args()
    sizes = [10_000] if args.quick else [int(n) for n in args.rows.split(",")]
    repeats = 3 if args.quick else args.repeats
    results = {}
    for rows in sizes:
        results[rows] = {"curator": curator(rows), **llmframe_runs(rows, repeats)}
        print(f"  {rows:,}: {results[rows]}", file=sys.stderr)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
