"""The benchmark suite, one command: python benchmarks/run.py [--quick] [--write]

Every scenario against the loopback simulator in its own process, side by side in one run:
online throughput (llmframe, raw aiohttp, the openai SDK) at two latencies and two concurrencies,
the peer tools (Bespoke Curator, LOTUS; set up once with `python benchmarks/peers/setup.py`),
cached re-runs, peak memory (of generate, and of `llmframe run` streaming a file), a rate-limited run, batch
mode's file building and result mapping, the cost features (estimate, usage=True), local models
(transformers, and vLLM from LLMFRAME_VLLM_PYTHON or this Python; skipped when not installed), and Ray
Data (skipped without ray), and every script of its own (SCRIPTS below, and any benchmarks/bench_*.py that sets
SUITE_TITLE: the run memo, the first call, Polars, embeddings, the shared store, and what each issue adds).
--quick shrinks every scenario (a few minutes); --write puts the tables into benchmarks/RESULTS.md between the
suite markers; --only online,cached,... runs a subset (and writes only its tables); --list names them all.

A new benchmark script joins the suite with two lines at its top level, read here without importing it:
    SUITE_TITLE = "Media: images and PDFs"   # its heading in the report; the scenario is named after the file
    SUITE_QUICK = ["--rows", "2000"]          # its arguments under --quick (default ["--quick"]); SUITE_FULL too
It runs as its own process and prints its markdown (tables, notes) on stdout; a failure is reported, not fatal.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import aiohttp  # noqa: E402
import diskcache  # noqa: E402
import openai  # noqa: E402
import pandas as pd  # noqa: E402

import llmframe  # noqa: E402
from benchmarks import bench_batch, bench_core, bench_cost  # noqa: E402
from llmframe.testing import SimulatorProcess  # noqa: E402

MARK_START, MARK_END = "<!-- suite:start -->", "<!-- suite:end -->"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_raw_aiohttp(texts: list[str], sim: SimulatorProcess, concurrency: int) -> list[str]:
    """The floor: aiohttp + Semaphore + gather, JSON posted and parsed directly."""

    async def go() -> list[str]:
        url = sim.base_url + "/chat/completions"
        sem = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        headers = {"Authorization": f"Bearer {sim.api_key}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def one(prompt: str) -> str:
                body = {"model": bench_core.MODEL, "messages": [{"role": "user", "content": prompt}]}
                async with sem, session.post(url, json=body) as reply:
                    data = await reply.json()
                    return data["choices"][0]["message"]["content"]

            return await asyncio.gather(*(one(t) for t in texts))

    return asyncio.run(go())


def online(rows: int, latency: float, concurrency: int, repeats: int, tmp: Path) -> dict[str, dict]:
    """Interleaved repeats of llmframe, raw aiohttp and the SDK baseline; rows/s and CPU s per 1,000 rows."""
    frame, texts = bench_core.make_frame(rows), bench_core.prompts(rows)
    clients = {
        "llmframe": lambda sim, r: bench_core.run_llmframe(frame, sim, concurrency, str(tmp / f"o-{latency}-{concurrency}-{r}")),
        "raw aiohttp": lambda sim, r: run_raw_aiohttp(texts, sim, concurrency),
        "openai SDK": lambda sim, r: bench_core.run_baseline(texts, sim, concurrency),
    }
    stats = {name: {"rps": [], "cpu": []} for name in clients}
    with SimulatorProcess(latency=latency, max_seconds=3600) as sim:
        # Warm-up: imports, the executor's loop, first connections.
        bench_core.run_llmframe(frame.head(200), sim, concurrency, str(tmp / f"warm-{latency}-{concurrency}"))
        run_raw_aiohttp(texts[:200], sim, concurrency)
        for r in range(repeats):
            for name, client in clients.items():
                if name == "openai SDK" and r and (not stats[name]["rps"] or statistics.median(stats[name]["rps"]) < 500):
                    continue  # minutes per repeat at this pace, and far from the others: once is enough
                try:
                    _, wall, cpu = bench_core.timed(client, sim, r)
                except Exception as exc:  # a client that breaks down is a result too, not the end of the suite
                    stats[name]["error"] = f"{type(exc).__name__}: {exc}"[:120]
                    log(f"  {name} failed: {stats[name]['error']}")
                    continue
                stats[name]["rps"].append(rows / wall)
                stats[name]["cpu"].append(cpu * 1000 / rows)
            log(f"  online {rows:,} rows, {latency * 1000:g} ms, {concurrency} in flight, repeat {r + 1}: "
                + ", ".join(f"{n} {s['rps'][-1]:,.0f}/s" for n, s in stats.items() if s["rps"]))
    return stats


def peers(rows: int, concurrency: int, llmframe_rps: float) -> list[dict]:
    """Curator and LOTUS on the same server, if their environments are set up."""
    try:
        from benchmarks.peers.harness import run_peer
    except ImportError as exc:
        return [{"tool": "peers", "error": f"benchmarks/peers is missing ({exc})"}]
    results = []
    with SimulatorProcess(latency=0.02, max_seconds=3600) as sim:
        for tool in ("curator", "lotus"):
            try:
                for line in run_peer(tool, sim.base_url, sim.api_key, rows, concurrency, cached=True):
                    results.append({**line, "llmframe_ratio": llmframe_rps / line["rows_per_s"]})
            except Exception as exc:  # a peer that cannot run is reported, not fatal
                results.append({"tool": tool, "error": str(exc).splitlines()[0][:200]})
            log(f"  peer {tool}: {results[-1]}")
    return results


def cached(rows: int, repeats: int, tmp: Path) -> list[float]:
    """Rows/s of a fully cached generate call."""
    args = argparse.Namespace(cached_rows=rows, repeats=repeats, concurrency=100)
    with SimulatorProcess(latency=0.0, max_seconds=3600) as sim:
        return bench_core.cached(args, sim, tmp)


def memory(rows: int, mode: str) -> dict:
    """Peak RSS of one generate call in a fresh process (benchmarks/memory.py)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--rows", str(rows), "--mode", mode],
                         capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def local_models(quick: bool) -> list[dict]:
    """benchmarks/bench_local.py for transformers (this Python) and vLLM (LLMFRAME_VLLM_PYTHON, else this one)."""
    results = []
    pythons = {"transformers": sys.executable, "vllm": os.environ.get("LLMFRAME_VLLM_PYTHON", sys.executable)}
    for engine, python in pythons.items():
        if subprocess.run([python, "-c", f"import {engine}"], capture_output=True).returncode:
            results.append({"engine": engine, "error": f"{engine} is not installed for {python}"})
            continue
        sizes = ["--rows", "64", "--repeats", "1"] if quick else ["--rows", "256", "--repeats", "3"]
        out = subprocess.run([python, str(ROOT / "benchmarks" / "bench_local.py"), "--engine", engine, *sizes],
                             capture_output=True, text=True, timeout=3600)
        if out.returncode:  # a local engine that cannot run is reported, not fatal
            results.append({"engine": engine, "error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]})
        else:
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        log(f"  local {engine}: {results[-1]}")
    return results


def stream(rows: int, mode: str) -> dict:
    """Peak RSS of `llmframe run` streaming a Parquet file, in a fresh process (benchmarks/stream.py)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stream.py"), "--rows", str(rows), "--mode", mode],
                         capture_output=True, text=True, timeout=7200, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ray_scenario(quick: bool) -> str:
    """benchmarks/bench_ray.py in its own process (it starts a local Ray cluster); a line saying why if skipped."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Skipped: ray is not installed (`pip install 'llmframe[ray]'`)."
    sizes = ["--rows", "5000", "--budget-seconds", "12"] if quick else ["--rows", "20000"]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ray.py"), *sizes], capture_output=True,
                         text=True, timeout=3600, check=True)
    return out.stdout[out.stdout.find("Command:"):].strip()  # Ray's raylet may print warnings to stdout first


# Scripts that predate SUITE_TITLE: scenario -> (file, heading, quick arguments, full arguments).
SCRIPTS = {
    "polars": ("bench_polars.py", "Polars against pandas (the same call, interleaved)", ["--quick"], []),
    "embed": ("bench_embed.py", "Embeddings (df.llm.embed, search, sim_join)",
              ["--rows", "10000", "--memory-rows", "20000", "--search-rows", "100000", "--join-right", "10000"], []),
    "store": ("bench_store.py", "The shared PostgreSQL store against diskcache", ["--rows", "20000", "--online",
                                                                                  "5000", "--repeats", "1"], []),
}


def discovered() -> dict[str, tuple]:
    """SCRIPTS, and every benchmarks/bench_<name>.py whose top level sets SUITE_TITLE (SUITE_QUICK, SUITE_FULL)."""
    found = dict(SCRIPTS)
    for path in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        values = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and node.targets[0].id in ("SUITE_TITLE", "SUITE_QUICK", "SUITE_FULL"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
        if "SUITE_TITLE" in values:
            found[path.stem.removeprefix("bench_")] = (path.name, values["SUITE_TITLE"],
                                                        values.get("SUITE_QUICK", ["--quick"]), values.get("SUITE_FULL", []))
    return found


def script(name: str, quick: bool) -> str:
    """One script's markdown, run in its own process; a line saying why where it failed."""
    file, _, quick_args, full_args = discovered()[name]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / file), *(quick_args if quick else full_args)],
                         capture_output=True, text=True, timeout=7200)
    if out.returncode:
        return f"Not measured: `{file}` failed: {(out.stderr.strip().splitlines() or ['?'])[-1][:300]}"
    return out.stdout.strip()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def report(args, sections: dict) -> str:
    """The markdown tables."""
    lines = [
        f"Command: `{shlex.join(['python', 'benchmarks/run.py', *sys.argv[1:]])}` "
        f"({time.strftime('%Y-%m-%d')}, {sections['minutes']:.0f} minutes)",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}; Python {platform.python_version()}; "
        f"llmframe {llmframe.__version__}, pandas {pd.__version__}, openai {openai.__version__}, "
        f"aiohttp {aiohttp.__version__}, diskcache {diskcache.__version__}",
        "",
        f"Simulator ceiling (raw aiohttp, 200 in flight, latency 0): {sections['ceiling']:,.0f} requests/s.",
    ]
    if sections.get("online"):
        lines += ["", "### Online throughput", "",
                  "| latency | in flight | rows | client | rows/s, median (min–max) | CPU ms per row | vs raw aiohttp |",
                  "|---|---|---|---|---|---|---|"]
    for (latency, concurrency), stats in sections.get("online", {}).items():
        raw = statistics.median(stats["raw aiohttp"]["rps"]) if stats["raw aiohttp"]["rps"] else float("nan")
        for name, s in stats.items():
            if not s["rps"]:
                lines.append(f"| {latency * 1000:g} ms | {concurrency} | {args.rows:,} | {name} | failed: "
                             f"{s.get('error', '?')} | – | – |")
                continue
            lines.append(f"| {latency * 1000:g} ms | {concurrency} | {args.rows:,} | {name} | {spread(s['rps'])} | "
                         f"{statistics.median(s['cpu']):.3f} | {statistics.median(s['rps']) / raw:.2f} |")
    if sections.get("online"):
        lines += ["", "Target: llmframe >= 0.9x raw aiohttp at 20 ms, 100 and 1,000 in flight (issue 28; 0.8x before)."]
    if sections.get("peers"):
        lines += ["", "### Peers on the same server (20 ms, 100 in flight)", "",
                  "| tool | version | rows | rows/s | CPU s | cached re-run | llmframe is |", "|---|---|---|---|---|---|---|"]
    for p in sections.get("peers", []):
        if "error" in p:
            lines.append(f"| {p['tool']} | – | – | – | – | – | not measured: {p['error']} |")
        elif p.get("cached"):  # compared with llmframe's cached re-runs below, not with its online rate
            lines.append(f"| {p['tool']} | {p.get('version', '?')} | {p['rows']:,} | {p['rows_per_s']:,.0f} | "
                         f"{p['cpu_seconds']:.1f} | yes ({p.get('cache_level', '?')} cache{', ' + p['note'] if p.get('note') else ''}) | – |")
        else:
            lines.append(f"| {p['tool']} | {p.get('version', '?')} | {p['rows']:,} | {p['rows_per_s']:,.0f} | "
                         f"{p['cpu_seconds']:.1f} | no | {p['llmframe_ratio']:.1f}x faster |")
    if sections.get("peers"):
        lines += ["", "Targets: >= 4x Curator and >= 6x LOTUS online."]
    if sections.get("cached"):
        lines += ["", "### Cached re-runs: the per-row path (LLMFRAME_MEMO=0; the run memo is its own scenario, `memo`)", "",
                  "| rows | rows/s, median (min–max) | target |", "|---|---|---|"]
    for rows, rates in sections.get("cached", {}).items():
        lines.append(f"| {rows:,} | {spread(rates)} | {'>= 100,000' if rows >= 100_000 else '–'} |")
    if sections.get("memory"):
        lines += ["", "### Peak memory (one generate call in a fresh process)", "",
                  "The interpreter with llmframe, pandas and the SDKs imported is a fixed cost, measured before any "
                  "data exists (baseline); what the data costs is the peak less that.", "",
                  "| rows | mode | seconds | baseline, MB | RSS before the call, MB | peak RSS, MB | peak anonymous, MB "
                  "| input + output frames, MB | (peak − baseline) / frames |",
                  "|---|---|---|---|---|---|---|---|---|"]
    for m in sections.get("memory", []):
        frames = m["input_mb"] + m["output_mb"]
        lines.append(f"| {m['rows']:,} | {m['mode']} | {m['seconds']} | {m['baseline_mb']} | {m['rss_before_mb']} | "
                     f"{m['peak_rss_mb']} | {m['peak_anon_mb']} | {frames:.0f} | "
                     f"{(m['peak_rss_mb'] - m['baseline_mb']) / frames:.2f} |")
    if sections.get("memory"):
        lines += ["", "Target: peak RSS at 1,000,000 uncached rows <= 1.5x the input plus output frames."]
    if sections.get("batch"):
        lines += ["", "### Batch mode: request files built, result lines mapped back (CPU work, no server)", "",
                  bench_batch.table(sections["batch"])]
    if sections.get("local"):
        lines += ["", "### Local models: llmframe vs a hand-written loop (tiny test model)", "",
                  "| engine | versions | rows x new tokens | llmframe tokens/s | hand-written tokens/s | ratio | target |",
                  "|---|---|---|---|---|---|---|"]
        for m in sections["local"]:
            if "error" in m:
                lines.append(f"| {m['engine']} | – | – | – | – | – | not measured: {m['error']} |")
                continue
            rates = m["median_tokens_per_s"]
            lines.append(f"| {m['engine']} | {m['version']} | {m['rows']} x {m['tokens_per_row']} | "
                         f"{rates['llmframe']:,.0f} | {rates['hand-written']:,.0f} | {m['ratio']:.2f} | >= {m['target']} |")
    if sections.get("stream"):
        lines += ["", "### `llmframe run`: peak memory streaming a Parquet file (latency 0)", "",
                  "| rows | mode | seconds | rows/s | input file, MB | output file, MB | peak RSS, MB |",
                  "|---|---|---|---|---|---|---|"]
    for m in sections.get("stream", []):
        lines.append(f"| {m['rows']:,} | {m['mode']} | {m['seconds']} | {m['rows_per_s']:,} | {m['input_mb']} | "
                     f"{m['output_mb']} | {m['peak_rss_mb']} |")
    if sections.get("stream"):
        lines += ["", "Target: peak RSS flat in the row count (the same at 5,000,000 rows as at 1,000,000)."]
    if sections.get("ratelimit"):
        lines += ["", "### Rate-limited run", "", sections["ratelimit"]]
    if sections.get("cost"):
        lines += ["", "### Cost features (estimate, usage=True)", "", bench_cost.table(sections["cost"])]
    for name, text in sections.get("scripts", {}).items():
        lines += ["", f"### {discovered()[name][1]}", "", f"`python benchmarks/{discovered()[name][0]}`", "", text]
    if sections.get("ray"):
        lines += ["", "### Ray Data (local cluster vs one process; shared vs split budget)", "", sections["ray"]]
    return "\n".join(lines)


SCENARIOS = ("online", "peers", "cached", "memory", "batch", "cost", "local", "stream", "ratelimit", "ray",
             *discovered())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenarios, one repeat: a few minutes")
    parser.add_argument("--write", action="store_true", help="write the tables into benchmarks/RESULTS.md")
    parser.add_argument("--only", type=lambda text: set(text.split(",")), default=set(SCENARIOS),
                        help=f"comma-separated scenarios to run, of {','.join(SCENARIOS)} (default: all)")
    parser.add_argument("--list", action="store_true", help="name every scenario and stop")
    args = parser.parse_args()
    if args.list:
        print("\n".join(f"{n:<10} {discovered()[n][1] if n in discovered() else 'built in'}" for n in SCENARIOS))
        return 0
    unknown = args.only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {','.join(SCENARIOS)}")
    args.rows = 3_000 if args.quick else 10_000
    repeats = 1 if args.quick else 3
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="llmframe-suite-"))
    sections: dict = {"ceiling": bench_core.server_ceiling()}
    log(f"simulator ceiling {sections['ceiling']:,.0f}/s")
    only = args.only
    if "online" in only:
        sections["online"] = {
            (latency, concurrency): online(args.rows, latency, concurrency, repeats, tmp)
            for latency in (0.0, 0.02)
            for concurrency in (100, 1000)
        }
    if "peers" in only:
        # Peers are compared with llmframe's online rate at 20 ms and 100 in flight: measured here if not above.
        stats = sections.get("online", {}).get((0.02, 100)) or online(args.rows, 0.02, 100, repeats, tmp)
        sections["peers"] = peers(2_000 if args.quick else 10_000, 100, statistics.median(stats["llmframe"]["rps"]))
    if "cached" in only:
        cached_sizes = (100_000,) if args.quick else (100_000, 1_000_000)
        sections["cached"] = {rows: cached(rows, repeats, tmp) for rows in cached_sizes}
    if "memory" in only:
        memory_rows = 200_000 if args.quick else 1_000_000
        sections["memory"] = [memory(memory_rows, "cached"), memory(memory_rows, "uncached")]
        log(f"memory {sections['memory']}")
    if "batch" in only:
        sections["batch"] = bench_batch.measure(100_000 if args.quick else 1_000_000, repeats)
    if "cost" in only:
        sections["cost"] = bench_cost.measure(200_000 if args.quick else 1_000_000,
                                              20_000 if args.quick else 100_000, repeats)
    if "local" in only:
        sections["local"] = local_models(args.quick)
    if "stream" in only:
        stream_runs = [(100_000, "uncached"), (200_000, "cached"), (1_000_000, "cached")] if args.quick else \
            [(1_000_000, "uncached"), (1_000_000, "cached"), (5_000_000, "cached")]
        sections["stream"] = [stream(rows, mode) for rows, mode in stream_runs]
        log(f"stream {sections['stream']}")
    if "ratelimit" in only and not args.quick:
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ratelimit.py")], capture_output=True,
                             text=True, timeout=1800, check=True)
        sections["ratelimit"] = out.stdout.split("\n", 2)[2].strip()
    sections["scripts"] = {}
    for name in discovered():  # each in its own process: Polars, embeddings, the memo, the first call, ...
        if name in only:
            sections["scripts"][name] = script(name, args.quick)
            log(f"{name}: {sections['scripts'][name][:200]}")
    if "ray" in only:
        sections["ray"] = ray_scenario(args.quick)
        log(f"ray {sections['ray'][:200]}")
    sections["minutes"] = (time.monotonic() - started) / 60
    text = report(args, sections)
    print(text)
    if args.write:
        path = ROOT / "benchmarks" / "RESULTS.md"
        current = path.read_text()
        block = f"{MARK_START}\n{text}\n{MARK_END}"
        if MARK_START in current:
            head, rest = current.split(MARK_START, 1)
            current = head + block + rest.split(MARK_END, 1)[1]
        else:
            current = current.rstrip() + "\n\n## The suite (`python benchmarks/run.py`)\n\n" + block + "\n"
        path.write_text(current)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
