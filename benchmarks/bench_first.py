"""The first call in a fresh process against the same call warm: python benchmarks/bench_first.py [--processes 5]

Each repeat starts a fresh interpreter (the parent keeps one simulator at 20 ms for all of them) that imports
pandas and llmframe, then times two generate calls of 200 distinct, uncached rows at 100 in flight: the first
(SDK import, client, store open, loop thread: everything a script, the CLI or a notebook's first cell pays)
and a second one on other rows (warm). Also times `import llmframe` against `import pandas` alone, and
`llmframe --version` / `llmframe info`. Target: first <= 1.3x warm; import <= pandas + 50 ms; info <= 1 s.
--profile prints, for one fresh process, where the first call's time goes (cProfile, top functions).
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

SUITE_TITLE = "First call in a fresh process; import and command-line times"
SUITE_QUICK = ["--quick"]

PAUSE = 0.5  # seconds between the imports and the first call in the second variant
# Children import llmframe with bytecode, as an installed package is (pip compiles it): a dev environment's
# PYTHONDONTWRITEBYTECODE=1 would make every fresh process compile llmframe's ~75 modules (~90 ms here), which no
# user pays. Kept in a folder of its own (the untimed first run fills it); --source measures without it.
BYTECODE = {"PYTHONPYCACHEPREFIX": os.path.join(tempfile.gettempdir(), f"llmframe-bench-pyc-{os.getuid()}")}

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import pandas as pd
import llmframe
imported = time.perf_counter() - t0
base_url, key, cache, rows, profile = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
time.sleep(float(sys.argv[6]))  # a pause after the imports: reading the data, a notebook's next cell

def call(start):
    df = pd.DataFrame({"i": range(start, start + rows)})
    t = time.perf_counter()
    out = df.llm.generate("Summarise row {i}", model="openai:sim-model", base_url=base_url, api_key=key,
                          max_concurrency=100, cache_dir=cache, progress=False)
    assert out["response"].notna().all(), out["response_error"].dropna().head()
    return time.perf_counter() - t

if profile:
    import cProfile, pstats
    p = cProfile.Profile(); p.enable(); first = call(0); p.disable()
    pstats.Stats(p, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
else:
    first = call(0)
warm = call(rows)
print(json.dumps({"import_s": imported, "first_s": first, "warm_s": warm}))
"""


def child_env() -> dict:
    """The children's environment: this tree on the path, bytecode written and read (unless --source)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if BYTECODE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(BYTECODE)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def fresh(sim, rows: int, profile: bool = False, pause: float = 0.0) -> dict:
    """One fresh interpreter's figures (its own empty cache folder); pause: seconds between imports and call."""
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", CHILD, sim.base_url, sim.api_key, cache, str(rows),
                              str(int(profile)), str(pause)],
                             capture_output=True, text=True, timeout=600, env=child_env())
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    if profile:
        print(out.stderr, file=sys.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def wall(cmd: list[str]) -> float:
    """Wall seconds of one command in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=child_env())
    return time.perf_counter() - start


def measure(processes: int = 5, rows: int = 200) -> dict:
    """Medians over fresh processes, interleaved: first call, warm call, imports, the CLI."""
    from llmframe.testing import SimulatorProcess

    py = sys.executable
    runs, paused, pandas_s, llmframe_s, version_s, info_s = [], [], [], [], [], []
    with SimulatorProcess(latency=0.02, max_seconds=3600) as sim:
        fresh(sim, rows)  # untimed: the OS file cache, the bytecode
        wall([py, "-m", "llmframe", "info"])
        for _ in range(processes):
            runs.append(fresh(sim, rows))
            paused.append(fresh(sim, rows, pause=PAUSE))
            pandas_s.append(wall([py, "-c", "import pandas"]))
            llmframe_s.append(wall([py, "-c", "import pandas, llmframe"]))
            version_s.append(wall([py, "-m", "llmframe", "--version"]))
            info_s.append(wall([py, "-m", "llmframe", "info"]))
    med = statistics.median
    first, warm = med(r["first_s"] for r in runs), med(r["warm_s"] for r in runs)
    return {"rows": rows, "processes": processes, "first_s": first, "warm_s": warm,
            "ratio": med(r["first_s"] / r["warm_s"] for r in runs), "paused_first_s": med(r["first_s"] for r in paused),
            "paused_ratio": med(r["first_s"] / r["warm_s"] for r in paused), "pandas_s": med(pandas_s),
            "pandas_llmframe_s": med(llmframe_s), "version_s": med(version_s), "info_s": med(info_s)}


def table(m: dict) -> str:
    """The markdown table of measure()'s figures."""
    extra = (m["pandas_llmframe_s"] - m["pandas_s"]) * 1000
    return "\n".join([
        f"Medians of {m['processes']} fresh processes, interleaved (20 ms, 100 in flight, {m['rows']} rows; "
        f"{'with bytecode' if BYTECODE else 'no bytecode: llmframe compiled in each process'}).", "",
        "| measure | value | target | result |", "|---|---|---|---|",
        f"| first call / warm call | {m['first_s']:.3f} s / {m['warm_s']:.3f} s = {m['ratio']:.2f}x | <= 1.3x | "
        f"{'met' if m['ratio'] <= 1.3 else 'NOT met'} |",
        f"| the same, {PAUSE:g} s after the imports | {m['paused_first_s']:.3f} s = {m['paused_ratio']:.2f}x warm | "
        f"<= 1.3x | {'met' if m['paused_ratio'] <= 1.3 else 'NOT met'} |",
        f"| `import pandas, llmframe` − `import pandas` | {m['pandas_llmframe_s']:.3f} − {m['pandas_s']:.3f} s = "
        f"{extra:+.0f} ms | <= +50 ms | {'met' if extra <= 50 else 'NOT met'} |",
        f"| `llmframe --version` | {m['version_s']:.3f} s | – | – |",
        f"| `llmframe info` | {m['info_s']:.3f} s | <= 1 s | {'met' if m['info_s'] <= 1 else 'NOT met'} |",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="profile one fresh process's first call and stop")
    parser.add_argument("--quick", action="store_true", help="3 processes")
    parser.add_argument("--source", action="store_true", help="no bytecode: every process compiles llmframe")
    args = parser.parse_args()
    if args.source:
        BYTECODE.clear()
    if args.profile:
        from llmframe.testing import SimulatorProcess

        with SimulatorProcess(latency=0.02, max_seconds=600) as sim:
            print(json.dumps(fresh(sim, args.rows, profile=True)))
        return 0
    print(table(measure(3 if args.quick else args.processes, args.rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
