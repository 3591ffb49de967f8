"""Media benchmark (issue 21): a column of image files through df.llm.generate against a raw aiohttp client posting
the same bodies, the cached re-run, and peak memory against the number of rows.

python benchmarks/bench_media.py [--rows 10000] [--kb 100] [--latency 0.02] [--concurrency 100] [--cached REPEAT]

Prints a markdown table for benchmarks/RESULTS.md. The simulator runs in a child process, so its CPU is not the
client's. Each row is its own ~100 KB PNG file (one noise image, each copy with its own trailing bytes, so every
digest differs). The raw client reads each file, base64-encodes it and posts the same chat body llmframe sends
(an image_url data URL and the text), concurrency at a time. Peak memory is measured in fresh processes (--memory).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

import llmframe  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402

MODEL = "sim-model"


def make_files(folder: Path, rows: int, kb: int) -> list[str]:
    """rows distinct PNG files of about kb KB each."""
    side = int((kb * 1024 / 3) ** 0.5)
    noise = Image.frombytes("RGB", (side, side), random.Random(0).randbytes(side * side * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG", compress_level=1)
    base = out.getvalue()
    paths = []
    for i in range(rows):
        path = folder / f"{i:06d}.png"
        path.write_bytes(base + i.to_bytes(8, "little"))  # after IEND: the image reads the same, the digest differs
        paths.append(str(path))
    return paths


def prompts(rows: int) -> list[str]:
    return [f"Describe item {i}" for i in range(rows)]


async def raw_client(base_url: str, key: str, paths: list[str], texts: list[str], concurrency: int) -> int:
    """The baseline: each file read and base64-encoded when its request is sent, the same body, aiohttp."""
    pending = list(range(len(paths)))[::-1]
    answered = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def worker():
            nonlocal answered
            while pending:
                i = pending.pop()
                with open(paths[i], "rb") as f:
                    data = f.read()
                url = "data:image/png;base64," + base64.b64encode(data).decode()
                body = {"model": MODEL, "messages": [{"role": "user", "content": [
                    {"type": "text", "text": texts[i]}, {"type": "image_url", "image_url": {"url": url}}]}]}
                async with session.post(f"{base_url}/chat/completions", data=orjson.dumps(body)) as reply:
                    answer = await reply.json()
                answered += bool(answer["choices"][0]["message"]["content"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered


def generate(frame: pd.DataFrame, sim, cache: str, concurrency: int) -> pd.DataFrame:
    return frame.llm.generate(["{text}", llmframe.image("path")], model=f"openai:{MODEL}", base_url=sim.base_url,
                              api_key=sim.api_key, cache_dir=cache, max_concurrency=concurrency, progress=False)


def memory(rows: int, kb: int, latency: float, concurrency: int) -> dict:
    """In this (fresh) process: peak RSS of one uncached run over rows image files, beyond the baseline."""
    def rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cache:
        frame = pd.DataFrame({"text": prompts(rows), "path": make_files(Path(folder), rows, kb)})
        with SimulatorProcess(latency=latency) as sim:
            generate(frame.head(50), sim, tempfile.mkdtemp(), concurrency)  # imports and first connections
            peak, stop = [rss()], threading.Event()
            base = peak[0]

            def sample():
                while not stop.wait(0.02):
                    peak[0] = max(peak[0], rss())

            threading.Thread(target=sample, daemon=True).start()
            out = generate(frame, sim, cache, concurrency)
            stop.set()
    return {"rows": rows, "base_mb": round(base, 1), "peak_mb": round(peak[0], 1),
            "media_mb": round(rows * kb / 1024, 1), "ok": bool(out["response"].notna().all())}


def cached_only(rows: int, kb: int, repeat: int) -> None:
    """--cached: only the cached re-run, repeat times after one run that fills the cache (no latency): its
    median rows/s and CPU microseconds a row (both threads: planning and the engine's cache lookups)."""
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cache:
        frame = pd.DataFrame({"text": prompts(rows), "path": make_files(Path(folder), rows, kb)})
        with SimulatorProcess(latency=0.0) as sim:
            generate(frame, sim, cache, 100)
            walls, cpus = [], []
            for _ in range(repeat):
                cpu, start = time.process_time(), time.perf_counter()
                again = generate(frame, sim, cache, 100)
                walls.append(rows / (time.perf_counter() - start))
                cpus.append((time.process_time() - cpu) / rows * 1e6)
                assert again.attrs["llmframe"]["cached"] == rows
    print(json.dumps({"rows": rows, "rows_per_s": round(statistics.median(walls)), "min": round(min(walls)),
                      "max": round(max(walls)), "cpu_us_per_row": round(statistics.median(cpus), 1)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--kb", type=int, default=100)
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--memory", action="store_true", help="only the peak-memory measurement, as JSON")
    p.add_argument("--cached", type=int, metavar="REPEAT", help="only the cached re-run, REPEAT times, as JSON")
    args = p.parse_args()
    if args.cached:
        cached_only(args.rows, args.kb, args.cached)
        return
    if args.memory:
        print(json.dumps(memory(args.rows, args.kb, args.latency, args.concurrency)))
        return
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cache:
        paths = make_files(Path(folder), args.rows, args.kb)
        texts = prompts(args.rows)
        frame = pd.DataFrame({"text": texts, "path": paths})
        with SimulatorProcess(latency=args.latency) as sim:
            asyncio.run(raw_client(sim.base_url, sim.api_key, paths[:200], texts[:200], args.concurrency))  # warm
            start = time.perf_counter()
            answered = asyncio.run(raw_client(sim.base_url, sim.api_key, paths, texts, args.concurrency))
            raw = args.rows / (time.perf_counter() - start)
            generate(frame.head(200), sim, tempfile.mkdtemp(), args.concurrency)  # warm: imports, connections
            start = time.perf_counter()
            first = generate(frame, sim, cache, args.concurrency)
            ours = args.rows / (time.perf_counter() - start)
            start = time.perf_counter()
            again = generate(frame, sim, cache, args.concurrency)
            cached = args.rows / (time.perf_counter() - start)
            text = dict(model=f"openai:{MODEL}", base_url=sim.base_url, api_key=sim.api_key, cache_dir=cache,
                        max_concurrency=args.concurrency, progress=False)
            frame[["text"]].llm.generate("{text}", **text)  # the same rows without their images, for reference
            start = time.perf_counter()
            frame[["text"]].llm.generate("{text}", **text)
            text_cached = args.rows / (time.perf_counter() - start)
        assert answered == args.rows and first["response"].notna().all()
        assert again.attrs["llmframe"]["cached"] == args.rows
    mems = []
    for rows in (args.rows // 5, args.rows):
        out = subprocess.run([sys.executable, __file__, "--memory", "--rows", str(rows), "--kb", str(args.kb),
                              "--latency", str(args.latency), "--concurrency", str(args.concurrency)],
                             check=True, capture_output=True, text=True)
        mems.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"| measure ({args.rows:,} rows of ~{args.kb} KB PNG files, {args.latency * 1000:g} ms latency, "
          f"{args.concurrency} in flight) | figure | target |")
    print("|---|---|---|")
    print(f"| raw aiohttp, same bodies | {raw:,.0f} rows/s | – |")
    print(f"| llmframe generate | {ours:,.0f} rows/s ({ours / raw:.2f}x raw) | >= 0.8x |")
    print(f"| llmframe cached re-run | {cached:,.0f} rows/s ({cached / text_cached:.2f}x the same rows' text-only "
          f"cached re-run, {text_cached:,.0f} rows/s, on this machine now) | >= 50,000 rows/s |")
    for mem in mems:
        print(f"| peak memory, {mem['rows']:,} rows uncached | {mem['peak_mb'] - mem['base_mb']:.0f} MB beyond the "
              f"baseline (the files hold {mem['media_mb']:,.0f} MB) | flat in rows |")


if __name__ == "__main__":
    main()
