"""Peak memory of `llmframe run` on a Parquet file: python benchmarks/stream.py --rows N --mode cached|uncached

Writes an input file of N rows (row groups of 100,000), starts the simulator in its own process
(latency 0), runs the real console command in a child process and reads that child's peak RSS
from the kernel (wait4). Prints one JSON line. In cached mode the cache is filled first, straight
through llmframe's own keys, so the run sends nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from benchmarks.bench_core import MODEL, TEMPLATE, TEXT, fill_cache, make_frame  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402

ROW_GROUP = 100_000


def write_input(path: Path, rows: int) -> None:
    """The rows of bench_core.make_frame, written a row group at a time (this process stays small too)."""
    schema = pa.schema([("i", pa.int64()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            writer.write_table(pa.table({"i": pa.array(range(start, start + n), pa.int64()),
                                         "text": pa.array([TEXT] * n)}, schema=schema))


def fill(rows: int, sim: SimulatorProcess, cache_dir: str) -> None:
    for start in range(0, rows, ROW_GROUP):
        frame = make_frame(min(ROW_GROUP, rows - start))
        frame["i"] += start
        fill_cache(frame, sim, cache_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=("cached", "uncached"), default="uncached")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmframe-stream-") as tmp, \
            SimulatorProcess(latency=0.0, max_seconds=7200) as sim:
        source, dest, cache_dir = Path(tmp, "in.parquet"), Path(tmp, "out.parquet"), str(Path(tmp, "cache"))
        write_input(source, args.rows)
        if args.mode == "cached":
            fill(args.rows, sim, cache_dir)
        command = [sys.executable, "-m", "llmframe", "run", str(source), str(dest), "--template", TEMPLATE,
                   "--model", f"openai:{MODEL}", "--base-url", sim.base_url, "--api-key", sim.api_key,
                   "--max-concurrency", str(args.concurrency), "--cache-dir", cache_dir, "--quiet"]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        before = sim.count
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS, not the simulator's
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"llmframe run failed: {child.stderr.read().decode()}")
        child.stderr.close()
        sent = sim.count - before
        meta = json.loads(pq.read_schema(dest).metadata[b"llmframe"])
        assert pq.ParquetFile(dest).metadata.num_rows == args.rows
        assert meta["report"]["failed"] == 0 and sent == (args.rows if args.mode == "uncached" else 0), (sent, meta)
        print(json.dumps({
            "rows": args.rows,
            "mode": args.mode,
            "seconds": round(seconds, 1),
            "rows_per_s": round(args.rows / seconds),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
            "input_mb": round(source.stat().st_size / 2**20, 1),
            "output_mb": round(dest.stat().st_size / 2**20, 1),
            "requests_sent": sent,
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
