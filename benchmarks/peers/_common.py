"""What run_curator.py and run_lotus.py share. Runs inside a peer's venv: standard library only.

Import this before the peer tool, since offline_env() sets variables that the tools read at import time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# The same rows as benchmarks/bench_core.py: TEMPLATE rendered over make_frame(n).
TEMPLATE = "Summarise row {i}: {text}"
TEXT = "the quarterly report shows steady growth in three regions and a small decline in one"
WARMUP_TEMPLATE = "Warm-up row {i}: {text}"  # distinct from every timed prompt, so warm-up fills no cache they hit
MODEL = "gpt-4o-mini"  # a name litellm knows (cost lookups, no pricing warnings); the simulator answers any model

WORK = Path(__file__).resolve().parents[1] / ".work"


def parse_args(doc: str) -> argparse.Namespace:
    """The runners' common command line."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:PORT/v1")
    p.add_argument("--api-key", required=True)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    p.add_argument("--cache-dir", help="scratch folder for the tool's caches (default: a fresh one under "
                                      "benchmarks/.work/, removed afterwards)")
    p.add_argument("--repeat-cached", action="store_true",
                   help="then run the same job again answered from the tool's cache; prints a second line")
    p.add_argument("--model", default=MODEL, help="model name sent to the server (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=100,
                   help="rows of an untimed warm-up run first, with prompts distinct from the timed ones (0: none)")
    return p.parse_args()


def tiktoken_cache_dir() -> str | None:
    """The folder where litellm bundles tiktoken's cached encodings (files named by 40 hex digits)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    known = root / "litellm_core_utils" / "tokenizers"  # where litellm 1.x keeps them
    if known.is_dir() and any(_hexname(p) for p in known.iterdir()):
        return str(known)
    found = sorted(p.parent for p in root.rglob("*") if _hexname(p))  # elsewhere in another litellm version
    return str(found[0]) if found else None


def _hexname(path: Path) -> bool:
    return len(path.name) == 40 and all(c in "0123456789abcdef" for c in path.name) and path.is_file()


def offline_env(cache_dir: Path) -> None:
    """Environment for a run with no network beyond loopback; every cache under cache_dir."""
    os.environ["TELEMETRY_ENABLED"] = "false"  # Curator's PostHog telemetry
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm would fetch its price list at import
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(cache_dir / "hf")
    os.environ["HF_DATASETS_CACHE"] = str(cache_dir / "hf" / "datasets")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    folder = tiktoken_cache_dir()
    if folder is None:
        print("warning: no bundled tiktoken cache found; token counting may try to download", file=sys.stderr)
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = folder
    for var in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(var, None)  # only the URL given on the command line, straight to loopback
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def scratch(args: argparse.Namespace, tool: str) -> tuple[Path, bool]:
    """(cache folder for this invocation, whether to remove it afterwards)."""
    if args.cache_dir:
        path = Path(args.cache_dir)
        if path.exists() and any(path.iterdir()):
            sys.exit(f"--cache-dir {path} is not empty: give a fresh folder per invocation")
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    WORK.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{tool}-cache-", dir=WORK)), True


def cleanup(path: Path, remove: bool) -> None:
    if remove:
        shutil.rmtree(path, ignore_errors=True)


def server_count(base_url: str) -> int | None:
    """Requests the llmframe simulator has received (its /_sim/stats), or None for any other server."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/").removesuffix("/v1") + "/_sim/stats", timeout=5) as resp:
            return int(json.load(resp)["count"])
    except Exception:
        return None


class Timer:
    """Wall, CPU of this process (all threads) and CPU of reaped child processes, over a with-block."""

    def __enter__(self) -> Timer:
        self._children = _children_cpu()
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.own_cpu = time.process_time() - self._cpu
        self.child_cpu = _children_cpu() - self._children
        self.cpu = self.own_cpu + self.child_cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(tool: str, version: str, args: argparse.Namespace, timer: Timer, answered: int, *,
           cached: bool, server_requests: int | None, **extra) -> dict:
    """Print the result as one JSON line on stdout and return it."""
    line = {
        "tool": tool, "version": version, "rows": args.rows, "concurrency": args.concurrency,
        "seconds": round(timer.seconds, 4), "cpu_seconds": round(timer.cpu, 4),
        "rows_per_s": round(args.rows / timer.seconds, 1), "answered": answered, "cached": cached,
        "child_cpu_seconds": round(timer.child_cpu, 4), "server_requests": server_requests,
        "warmup_rows": args.warmup, "model": args.model, **extra,
    }
    print(json.dumps(line), flush=True)
    return line


def check_answers(tool: str, answered: int, rows: int) -> None:
    if answered != rows:
        print(f"{tool}: only {answered} of {rows} rows got a non-empty answer", file=sys.stderr)
