"""Batch mode's own CPU work at scale: building and splitting the request files, and mapping result lines back.

    python benchmarks/bench_batch.py [--rows 1000000] [--repeats 3]

Build: every row's OpenAI batch line (custom id, /v1/chat/completions body) rendered from the planned
run and split into files by the provider's limits (50,000 requests / 200 MB), as submit() does,
ending with each file's bytes. Map: 1,000,000 output-file lines (as the Batch API writes them)
parsed, matched to their requests by custom id, checked and encoded for the cache, and placed in
the run's rows, as collecting a finished batch does (the cache write itself is measured apart).
Targets: >= 100,000 rows/s for each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from llmframe import constants
from llmframe.faces.frames import rows_of  # noqa: E402
from llmframe.faces import planning  # noqa: E402
from llmframe.plan.build import Plan  # noqa: E402
from llmframe.batch.openai import OpenAIBatches, parse_results  # noqa: E402
from llmframe.batch.runner import settle  # noqa: E402
from llmframe.batch.split import split  # noqa: E402
from llmframe.engine.run import open_provider  # noqa: E402
from llmframe.stores.diskcache import Store  # noqa: E402


def plan(rows: int, cache_dir: str) -> Plan:
    """A planned (rendered, keyed) batch run over `rows` review-like rows; sends nothing."""
    frame = pd.DataFrame({"review": [f"Review {i}: the product arrived on time and works as described." for i in range(rows)]})
    return planning.plan(rows_of(frame), "Sentiment of this review, one word:\n{review}", model="openai:gpt-4o-mini",
                         api_key="sk-bench", mode="batch", cache_dir=cache_dir, progress=False)


def build(run: Plan) -> tuple[float, float, int, int]:
    """Wall and CPU seconds to render and split every request into files; the number of files and their bytes."""
    work = run.work()
    adapter = OpenAIBatches(open_provider(run))
    start, cpu = time.perf_counter(), time.process_time()
    line = adapter.line_builder(run.params)

    def lines():
        for first in range(0, len(work.keys), constants.CHUNK_SIZE):
            for request in work.build(range(first, min(first + constants.CHUNK_SIZE, len(work.keys)))):
                yield request.key, line(request.key, request.messages)

    files, size = 0, 0
    for _group, texts in split(lines(), *constants.OPENAI_BATCH_LIMITS):
        data = ("\n".join(texts) + "\n").encode()
        files += 1
        size += len(data)
    return time.perf_counter() - start, time.process_time() - cpu, files, size


def output_files(keys: list[str], per_file: int) -> list[bytes]:
    """What the Batch API's output files hold for these requests: one chat completion per line."""
    files = []
    for start in range(0, len(keys), per_file):
        lines = []
        for i, key in enumerate(keys[start:start + per_file], start):
            body = {"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1760000000, "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "positive"},
                                 "finish_reason": "stop", "logprobs": None}],
                    "usage": {"prompt_tokens": 24, "completion_tokens": 1, "total_tokens": 25}}
            lines.append(json.dumps({"id": f"batch_req_{i}", "custom_id": key, "response": {
                "status_code": 200, "request_id": f"req_{i}", "body": body}, "error": None}))
        files.append(("\n".join(lines) + "\n").encode())
    return files


def collect(run: Plan, files: list[bytes], per_file: int) -> tuple[float, float]:
    """Wall and CPU seconds to map every output line back to its row: parse, match by custom id, encode for
    the cache."""
    keys = run.keys[:]
    index = {key: j for j, key in enumerate(keys)}
    results = [None] * len(keys)
    start, cpu = time.perf_counter(), time.process_time()
    for n, data in enumerate(files):
        chunk = keys[n * per_file:(n + 1) * per_file]
        responses, _items = settle(chunk, parse_results(data), "no answer", None, run.model)
        for key, response in zip(chunk, responses):
            results[index[key]] = response
    seconds = time.perf_counter() - start, time.process_time() - cpu
    assert all(r is not None and r.error is None and r.text == "positive" for r in results)
    return seconds


def measure(rows: int, repeats: int) -> dict:
    """Rows/s of building and of mapping back, `repeats` times each, and of the cache write once."""
    with tempfile.TemporaryDirectory(prefix="llmframe-batch-bench-") as cache_dir:
        run = plan(rows, cache_dir)
        per_file = constants.OPENAI_BATCH_LIMITS[0]
        builds, maps, builds_cpu, maps_cpu = [], [], [], []
        files_info = None
        for _ in range(repeats):
            seconds, cpu, files, size = build(run)
            builds.append(rows / seconds)
            builds_cpu.append(rows / cpu)
            files_info = (files, size)
        outputs = output_files(run.keys[:], per_file)
        for _ in range(repeats):
            seconds, cpu = collect(run, outputs, per_file)
            maps.append(rows / seconds)
            maps_cpu.append(rows / cpu)
        _responses, items = settle(run.keys[:], parse_results(b"".join(outputs)), "no answer", None, run.model)
        store = Store(str(Path(cache_dir) / "store"))
        start = time.perf_counter()
        for i in range(0, len(items), constants.CHUNK_SIZE * 16):
            store.set_many(items[i:i + constants.CHUNK_SIZE * 16])
        write = rows / (time.perf_counter() - start)
        store.close()
    return {"rows": rows, "build": builds, "map": maps, "build_cpu": builds_cpu, "map_cpu": maps_cpu,
            "cache_write": write, "files": files_info[0],
            "megabytes": round(files_info[1] / 2**20, 1)}


def table(result: dict) -> str:
    """The figures as a markdown table: wall-clock rows/s (the target's measure) and rows per CPU-second."""
    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"

    rows = []
    for step, key in ((f"build and split the request files ({result['files']} files, {result['megabytes']:,} MB)",
                       "build"), ("map result lines back to rows", "map")):
        met = "met" if statistics.median(result[key]) >= 100_000 else "NOT met"
        rows.append(f"| {step} | {result['rows']:,} | {spread(result[key])} | {spread(result[key + '_cpu'])} | "
                    f">= 100,000 | {met} |")
    return "\n".join([
        "| step | rows | rows/s, wall, median (min–max) | rows per CPU-second, median (min–max) | target | result |",
        "|---|---|---|---|---|---|",
        *rows,
        f"| (write the answers to the cache, apart) | {result['rows']:,} | {result['cache_write']:,.0f} | – | – | – |",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.rows, args.repeats)
    print(json.dumps(result), file=sys.stderr)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
