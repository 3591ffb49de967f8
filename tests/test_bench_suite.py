"""benchmarks/run.py finds every scenario: its own, and each script that sets SUITE_TITLE (issue 28)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_script_of_the_suite_is_listed_and_runnable_by_name():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--list"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    names = {line.split()[0] for line in done.stdout.splitlines()}
    assert {"online", "cached", "memory", "polars", "embed", "store", "memo", "first"} <= names
    scripts = {p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")
               if "SUITE_TITLE" in p.read_text()}
    assert scripts <= names
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "nonesuch"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert refused.returncode == 2 and "unknown scenario" in refused.stderr
