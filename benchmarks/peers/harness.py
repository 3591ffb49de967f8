"""Run a peer tool's benchmark script in its own venv, from llmframe's environment.

    from benchmarks.peers.harness import run_peer      # or: sys.path.insert(0, "benchmarks/peers")
    lines = run_peer("curator", sim.base_url, sim.api_key, rows=2000, concurrency=100, cached=True)

The peers are never imported here: each runs as `<venv>/bin/python benchmarks/peers/run_<tool>.py ...` in
a subprocess, and its JSON lines come back as dicts. Create the venvs first: python benchmarks/peers/setup.py
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent
WORK = PEERS_DIR.parent / ".work"
VENVS = {"curator": WORK / "venv-curator", "lotus": WORK / "venv-lotus"}


class PeerError(RuntimeError):
    """A peer's venv is missing, or its run failed or printed no result."""


def venv_python(tool: str) -> Path:
    """The venv's interpreter for tool, or PeerError saying how to make it."""
    if tool not in VENVS:
        raise ValueError(f"unknown peer {tool!r}; known: {', '.join(sorted(VENVS))}")
    python = VENVS[tool] / "bin" / "python"
    if not python.exists():
        raise PeerError(f"the {tool} venv is missing ({VENVS[tool]}): run python benchmarks/peers/setup.py first")
    return python


def run_peer(tool: str, base_url: str, api_key: str, rows: int, concurrency: int, cached: bool = False,
             timeout: float = 900, warmup: int | None = None) -> list[dict]:
    """Run one peer against an OpenAI-compatible server; returns its JSON lines (a second one when cached).

    tool: "curator" or "lotus". cached: also time a re-run answered from the tool's cache (LOTUS reports
    two cached lines: its operator cache and its per-row cache). warmup: rows of an untimed warm-up run
    (None: the script's default). A fresh cache folder under benchmarks/.work/ is used and removed.
    """
    python = venv_python(tool)
    cmd = [str(python), str(PEERS_DIR / f"run_{tool}.py"), "--base-url", base_url, "--api-key", api_key,
           "--rows", str(rows), "--concurrency", str(concurrency)]
    if cached:
        cmd.append("--repeat-cached")
    if warmup is not None:
        cmd += ["--warmup", str(warmup)]
    WORK.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    # stderr (progress bars, logs) goes to a file, not a pipe that could fill; its tail is shown on failure.
    with tempfile.TemporaryFile(mode="w+", dir=WORK) as err:
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                  timeout=timeout, env=env, cwd=PEERS_DIR.parents[1])
        except subprocess.TimeoutExpired:
            raise PeerError(f"{tool} did not finish within {timeout:g} s: {' '.join(cmd)}") from None
        err.seek(0)
        tail = err.read()[-3000:]
    if proc.returncode != 0:
        raise PeerError(f"{tool} exited with code {proc.returncode}: {' '.join(cmd)}\n--- stderr tail ---\n{tail}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise PeerError(f"{tool} printed no result line: {' '.join(cmd)}\n--- stderr tail ---\n{tail}")
    short = [line for line in lines if line.get("answered") != rows]
    if short:
        raise PeerError(f"{tool} left rows unanswered: {short}\n--- stderr tail ---\n{tail}")
    return lines


def main() -> int:
    """python benchmarks/peers/harness.py [--rows N] [--concurrency C] [--latency S] [--cached] [tool ...]"""
    import argparse
    import sys

    sys.path.insert(0, str(PEERS_DIR.parents[1]))
    from llmframe.testing import SimulatorProcess

    p = argparse.ArgumentParser(description="Run the peers against a fresh llmframe simulator.")
    p.add_argument("tools", nargs="*", default=sorted(VENVS))
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--cached", action="store_true")
    args = p.parse_args()
    with SimulatorProcess(latency=args.latency, max_seconds=3600) as sim:
        for tool in args.tools:
            for line in run_peer(tool, sim.base_url, sim.api_key, args.rows, args.concurrency, cached=args.cached):
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
