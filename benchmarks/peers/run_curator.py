"""Time Bespoke Curator's online OpenAI path against an OpenAI-compatible server (run inside venv-curator).

benchmarks/.work/venv-curator/bin/python benchmarks/peers/run_curator.py --base-url URL --api-key KEY
    --rows N --concurrency C [--cache-dir DIR] [--repeat-cached] [--warmup W]

Prints one JSON line per timed run. The rows are a pandas DataFrame (i, text), turned into a datasets.Dataset
inside the timed span, as a user holding a DataFrame would; an LLM subclass renders each row's prompt.
Curator caches whole runs in its working dir, keyed by dataset fingerprint and prompt/parse code: the
--repeat-cached run calls the same LLM on the same rows and working dir again, then a new LLM object
on them (as re-running a notebook cell does).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402  (before curator: sets the offline environment)

ARGS = common.parse_args(__doc__)
CACHE, REMOVE = common.scratch(ARGS, "curator")
common.offline_env(CACHE)

import importlib.metadata  # noqa: E402

import pandas as pd  # noqa: E402
from bespokelabs import curator  # noqa: E402
from datasets import Dataset  # noqa: E402

VERSION = importlib.metadata.version("bespokelabs-curator")
HUGE = 10**12  # requests and tokens per minute: no client-side throttling below the concurrency cap


class Summarise(curator.LLM):
    """One prompt per row; the answer is kept beside the row's index to check every row was answered."""

    template = common.TEMPLATE

    def prompt(self, row: dict) -> str:
        return self.template.format(i=row["i"], text=row["text"])

    def parse(self, row: dict, response: str) -> dict:
        return {"i": row["i"], "response": response}


class WarmUp(Summarise):
    template = common.WARMUP_TEMPLATE


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"i": range(n), "text": [common.TEXT] * n})


def make(cls: type[Summarise]) -> Summarise:
    return cls(
        model_name=ARGS.model,
        backend="openai",
        backend_params={
            "base_url": ARGS.base_url,
            "api_key": ARGS.api_key,
            "max_requests_per_minute": HUGE,
            "max_tokens_per_minute": HUGE,
            # Not in the OnlineBackendParams TypedDict of 0.1.31, but a field of OnlineRequestProcessorConfig:
            # a semaphore on requests in flight. Without it, only the rpm/tpm buckets limit concurrency.
            "max_concurrent_requests": ARGS.concurrency,
            "max_retries": 0,  # a failure shows up as an unanswered row, not as a slower run
        },
    )


def run(llm: Summarise, df: pd.DataFrame, working_dir: Path) -> int:
    """One call on a DataFrame; returns how many rows got a non-empty answer."""
    response = llm(Dataset.from_pandas(df, preserve_index=False), working_dir=str(working_dir))
    out = response.dataset
    answers = dict(zip(out["i"], out["response"]))
    return sum(1 for i in df["i"] if isinstance(answers.get(i), str) and answers[i].strip())


def main() -> int:
    try:
        work = CACHE / "curator"
        df = frame(ARGS.rows)
        if ARGS.warmup:
            run(make(WarmUp), frame(ARGS.warmup), CACHE / "warmup")
        llm = make(Summarise)  # its constructor sends one probe request for rate-limit headers, untimed
        before = common.server_count(ARGS.base_url)
        with common.Timer() as timer:
            answered = run(llm, df, work)
        after = common.server_count(ARGS.base_url)
        sent = None if before is None or after is None else after - before
        common.check_answers("curator", answered, ARGS.rows)
        common.report("curator", VERSION, ARGS, timer, answered, cached=False, server_requests=sent)
        if ARGS.repeat_cached:
            before = common.server_count(ARGS.base_url)
            with common.Timer() as timer:
                answered = run(llm, df, work)  # same rows, same LLM, same working dir
            after = common.server_count(ARGS.base_url)
            sent = None if before is None or after is None else after - before
            common.check_answers("curator (cached)", answered, ARGS.rows)
            common.report("curator", VERSION, ARGS, timer, answered, cached=True, server_requests=sent,
                          cache_level="run")  # whole run, by dataset fingerprint
            # Re-running a notebook cell builds the LLM again; its constructor's probe request is timed too.
            before = common.server_count(ARGS.base_url)
            with common.Timer() as timer:
                answered = run(make(Summarise), df, work)
            after = common.server_count(ARGS.base_url)
            sent = None if before is None or after is None else after - before
            common.check_answers("curator (cached, new LLM)", answered, ARGS.rows)
            common.report("curator", VERSION, ARGS, timer, answered, cached=True, server_requests=sent,
                          cache_level="run", note="new LLM object")
    finally:
        common.cleanup(CACHE, REMOVE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
