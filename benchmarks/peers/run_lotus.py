"""Time LOTUS's sem_map against an OpenAI-compatible server (run inside venv-lotus).

benchmarks/.work/venv-lotus/bin/python benchmarks/peers/run_lotus.py --base-url URL --api-key KEY
    --rows N --concurrency C [--cache-dir DIR] [--repeat-cached] [--warmup W]

Prints one JSON line per timed run. LOTUS calls litellm.batch_completion, a thread pool whose size is
LM(max_batch_size=...): that is the concurrency. Its first run uses LOTUS's default, enable_cache=False.
With --repeat-cached, a new LM gets an SQLite cache under the scratch folder (CacheType.SQLITE, as LOTUS's
docs show) and enable_cache=True; an untimed pass fills it, then the same sem_map is timed again. sem_map on a
DataFrame is wrapped in LOTUS's operator cache, so that re-run is answered by one whole-operator hit
("cache_level": "operator"). A third line times the per-row LM cache alone ("cache_level": "per_row"): the
same rows with one extra, unused column, which the operator cache (keyed by the whole frame) misses while
every row's prompt, and so its LM cache key, is unchanged. Each line reports both hit counters.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402  (before lotus and litellm: sets the offline environment)

ARGS = common.parse_args(__doc__)
CACHE, REMOVE = common.scratch(ARGS, "lotus")
common.offline_env(CACHE)

import importlib.metadata  # noqa: E402

import lotus  # noqa: E402
import pandas as pd  # noqa: E402
from lotus.cache import CacheConfig, CacheFactory, CacheType  # noqa: E402
from lotus.models import LM  # noqa: E402

VERSION = importlib.metadata.version("lotus-ai")


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"i": range(n), "text": [common.TEXT] * n})


def make_lm(cache=None) -> LM:
    """litellm's OpenAI provider pointed at the server; max_batch_size is the thread pool's size."""
    return LM(model=f"openai/{ARGS.model}", api_base=ARGS.base_url, api_key=ARGS.api_key,
              max_batch_size=ARGS.concurrency, cache=cache)


def run(df: pd.DataFrame, template: str) -> int:
    """One sem_map over the frame; returns how many rows got a non-empty answer."""
    out = df.sem_map(template)
    return int(sum(1 for a in out["_map"] if isinstance(a, str) and a.strip()))


def timed_run(df: pd.DataFrame, cached: bool, **extra) -> dict:
    lotus.settings.lm.reset_stats()
    before = common.server_count(ARGS.base_url)
    with common.Timer() as timer:
        answered = run(df, common.TEMPLATE)
    after = common.server_count(ARGS.base_url)
    sent = None if before is None or after is None else after - before
    common.check_answers("lotus" + (" (cached)" if cached else ""), answered, ARGS.rows)
    stats = lotus.settings.lm.stats
    extra = {**extra, "lm_cache_hits": stats.cache_hits, "operator_cache_hits": stats.operator_cache_hits}
    return common.report("lotus", VERSION, ARGS, timer, answered, cached=cached, server_requests=sent, **extra)


def main() -> int:
    try:
        df = frame(ARGS.rows)
        lotus.settings.configure(lm=make_lm(), enable_cache=False)
        if ARGS.warmup:
            run(frame(ARGS.warmup), common.WARMUP_TEMPLATE)
        timed_run(df, cached=False)
        if ARGS.repeat_cached:
            size = 4 * ARGS.rows + 100  # LRU bound: every row's entry plus the operator's own entries
            cache = CacheFactory.create_cache(CacheConfig(CacheType.SQLITE, max_size=size,
                                                          cache_dir=str(CACHE / "lotus-sqlite")))
            lotus.settings.configure(lm=make_lm(cache), enable_cache=True)
            with common.Timer() as fill:
                answered = run(df, common.TEMPLATE)
            common.check_answers("lotus (cache fill)", answered, ARGS.rows)
            # The same DataFrame again: one operator-cache hit answers the whole sem_map.
            timed_run(df, cached=True, cache_level="operator", fill_seconds=round(fill.seconds, 4))
            # The same rows plus a column the instruction does not use: the operator cache (keyed by the whole
            # frame) misses, the prompts are unchanged, so every row is answered by the per-row LM cache.
            timed_run(df.assign(unused=0), cached=True, cache_level="per_row", fill_seconds=round(fill.seconds, 4))
    finally:
        common.cleanup(CACHE, REMOVE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
