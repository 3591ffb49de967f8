"""Cost features at scale: estimate() rows/s, and the price of usage=True on a cached generate call.

    python benchmarks/bench_cost.py [--rows 1000000] [--cached-rows 100000] [--repeats 3]

estimate() validates, renders and keys every row as generate would, then looks every request up in
the cache and counts its tokens; it is timed against plan() alone (the same validation and
rendering), so the ratio is what the estimate itself adds. usage=True is timed on a run answered
entirely from a pre-filled cache, where the extra columns weigh most.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import llmframe  # noqa: E402, F401
from benchmarks.bench_core import TEMPLATE, fill_cache, make_frame, timed  # noqa: E402
from llmframe.faces.frames import rows_of  # noqa: E402
from llmframe.faces.planning import plan  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402

MODEL = "openai:gpt-4o-mini"  # priced by genai-prices, so the cost arithmetic runs too


def estimate_rates(rows: int, repeats: int, tmp: Path) -> dict:
    """Rows/s of estimate() and of plan() alone on an empty cache."""
    frame = make_frame(rows)
    out = {"rows": rows, "estimate": [], "plan": []}
    for r in range(repeats):
        cache_dir = str(tmp / f"estimate-{r}")
        est, wall, _ = timed(frame.llm.estimate, TEMPLATE, model=MODEL, max_tokens=5, cache_dir=cache_dir)
        assert est.uncached_requests == rows and est.cost is not None
        out["estimate"].append(rows / wall)
        _, wall, _ = timed(plan, rows_of(frame), TEMPLATE, model=MODEL, max_tokens=5, cache_dir=cache_dir, api_key="x",
                           progress=False)
        out["plan"].append(rows / wall)
        print(f"  estimate repeat {r + 1}: {out['estimate'][-1]:,.0f} rows/s, plan {out['plan'][-1]:,.0f} rows/s",
              file=sys.stderr)
    return out


def usage_rates(rows: int, repeats: int, tmp: Path) -> dict:
    """Rows/s of a fully cached generate call with and without usage=True (interleaved repeats)."""
    frame = make_frame(rows)
    cache_dir = str(tmp / "usage")
    out = {"rows": rows, "plain": [], "usage": []}
    with SimulatorProcess(latency=0.0, max_seconds=3600) as sim:
        fill_cache(frame, sim, cache_dir)
        for r in range(repeats):
            for name, usage in (("plain", False), ("usage", True)):
                result, wall, _ = timed(frame.llm.generate, TEMPLATE, model="openai:sim-model", base_url=sim.base_url,
                                        api_key=sim.api_key, cache_dir=cache_dir, progress=False, usage=usage,
                                        prices={"openai:sim-model": {"input_mtok": 0.15, "output_mtok": 0.6}})
                assert result.attrs["llmframe"]["cached"] == rows
                out[name].append(rows / wall)
            print(f"  cached repeat {r + 1}: plain {out['plain'][-1]:,.0f} rows/s, usage=True "
                  f"{out['usage'][-1]:,.0f} rows/s", file=sys.stderr)
    return out


def measure(rows: int, cached_rows: int, repeats: int) -> dict:
    """Both scenarios, with medians."""
    tmp = Path(tempfile.mkdtemp(prefix="llmframe-cost-"))
    est, use = estimate_rates(rows, repeats, tmp), usage_rates(cached_rows, repeats, tmp)
    med = statistics.median
    return {
        "estimate_rows": rows, "estimate_rps": med(est["estimate"]), "plan_rps": med(est["plan"]),
        "estimate_vs_plan": med(est["plan"]) / med(est["estimate"]),
        "cached_rows": cached_rows, "plain_rps": med(use["plain"]), "usage_rps": med(use["usage"]),
        "usage_slowdown": med(use["plain"]) / med(use["usage"]), "raw": {"estimate": est, "usage": use},
    }


def table(result: dict) -> str:
    """The markdown lines for RESULTS.md."""
    return "\n".join([
        "| scenario | rows | rows/s (median) | ratio |",
        "|---|---|---|---|",
        f"| estimate() | {result['estimate_rows']:,} | {result['estimate_rps']:,.0f} | "
        f"{result['estimate_vs_plan']:.2f}x the time of plan() alone ({result['plan_rps']:,.0f} rows/s) |",
        f"| cached generate, usage=True | {result['cached_rows']:,} | {result['usage_rps']:,.0f} | "
        f"{result['usage_slowdown']:.2f}x the time without usage ({result['plain_rps']:,.0f} rows/s) |",
    ])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cached-rows", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    result = measure(args.rows, args.cached_rows, args.repeats)
    print(table(result))
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
