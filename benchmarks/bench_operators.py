"""Semantic operators' benchmark: model calls against the naive method, and cached re-runs' speed.

python benchmarks/bench_operators.py [--join-rows 2000] [--candidates 5] [--topk-rows 10000] [--k 10]
                                     [--cached-rows 100000] [--repeats 3] [--paths per-row|both] [--cached-only]

On the simulator with its operator rules (llmframe.testing.rules), in this process: join n x n with
candidates=k (calls vs n*n), top_k of k over n (calls vs n, and n(n-1)/2 all pairs), and filter and classify
of --cached-rows rows answered from a cache filled beforehand (rows/s): by the per-row cache (the run memo off),
then by the run memo, each beside generate with the same prompt and schema. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import llmframe  # noqa: E402,F401  (registers df.llm)
from llmframe import constants  # noqa: E402
from llmframe.engine.run import open_cache  # noqa: E402
from llmframe.faces.frames import rows_of  # noqa: E402
from llmframe.ops import semantic  # noqa: E402
from llmframe.ops.calls import Caller  # noqa: E402
from llmframe.plan.request import Response  # noqa: E402
from llmframe.testing import Simulator, rule_answer  # noqa: E402
from llmframe.testing.rules import labels_in, merit, verdict  # noqa: E402

MODEL = "openai:sim-model"
COLOURS = ["red", "blue", "green", "black", "white", "grey", "yellow", "brown", "pink", "navy"]
THINGS = ["scarf", "shirt", "jacket", "boots", "dress", "socks", "hat", "belt", "coat", "gloves"]
STUFF = ["wool", "cotton", "leather", "linen", "silk", "denim", "fleece", "nylon", "suede", "velvet"]


def products(n: int, seed: int) -> list[str]:
    """n product names, all distinct, with a serial number."""
    rng = np.random.default_rng(seed)
    return [f"{COLOURS[a]} {STUFF[b]} {THINGS[c]} model {i}" for i, (a, b, c) in
            enumerate(rng.integers(0, 10, size=(n, 3)))]


def join(args, kw: dict) -> dict:
    """join n x n with candidates=k: listings are the products reworded, so each has one true match."""
    names = products(args.join_rows, 1)
    left = pd.DataFrame({"name": names})
    right = pd.DataFrame({"title": [f"{n.split(' model ')[0]} (model {n.split(' model ')[1]}) for sale"
                                    for n in reversed(names)]})
    left["name_id"] = [n.split(" model ")[1] for n in names]
    t0 = time.perf_counter()
    out = left.llm.join(right, 'Is this the listing of "model {left.name_id})"? {right.title} / {left.name}',
                        candidates=args.candidates,
                        embed_options={"base_url": kw["base_url"], "api_key": kw["api_key"]}, **kw)
    wall = time.perf_counter() - t0
    report = out.llm.report
    found = int((out["name_id"] == out["title"].str.extract(r"model (\d+)")[0]).sum())
    return {"calls": report["calls"], "naive": args.join_rows ** 2, "pairs": len(out), "true_found": found,
            "seconds": wall}


def top_k(args, kw: dict) -> dict:
    """top_k of k over n tickets, merits (the rule: the largest number) mostly distinct and often tied at 100."""
    rng = np.random.default_rng(2)
    merits = rng.integers(0, 200, size=args.topk_rows)
    df = pd.DataFrame({"text": [f"ticket {i}: customer waiting {m} hours" for i, m in enumerate(merits)]})
    df["text"] = [t.replace(f"ticket {i}:", "ticket:") for i, t in enumerate(df["text"])]
    t0 = time.perf_counter()
    out = df.llm.top_k("How urgent is this? {text}", k=args.k, **kw)
    wall = time.perf_counter() - t0
    report = out.llm.report
    exact = [merit(t) for t in out["text"]] == sorted(merits.tolist(), reverse=True)[: args.k]
    return {"calls": report["calls"], "n": args.topk_rows, "pairwise": report["stages"]["compare"]["rows"],
            "boundary": report["refined"]["boundary_rows"],
            "all_pairs": args.topk_rows * (args.topk_rows - 1) // 2, "exact": exact, "seconds": wall}


def fill(frame: pd.DataFrame, template: str, operator: str, answer, kw: dict, cache_dir: str, **how) -> None:
    """Write the rule's answer of every row straight into the cache, under the operator's own keys."""
    call = semantic.call_of(operator, **how)
    given = {k: v for k, v in kw.items() if k not in ("model", "sim")}
    caller = Caller(operator, MODEL, {**given, "cache_dir": cache_dir})
    plan = caller.plan(rows_of(frame), template, call["output"], system=call["system"])
    store = open_cache(plan)
    texts = frame["text"].tolist()
    rows = plan.first_row
    for start in range(0, len(plan.keys), 10_000):
        store.set_many([(key, Response(text=answer(template.format(text=texts[rows[j]])), input_tokens=1,
                                       output_tokens=1, finish_reason="stop").to_cache(MODEL, time.time()))
                        for j, key in enumerate(plan.keys[start:start + 10_000], start)])


def cached(args, kw: dict, tmp: str) -> dict:
    """Rows/s of filter and classify over --cached-rows rows, every answer cached."""
    n = args.cached_rows
    frame = pd.DataFrame({"text": [f"ticket {i}: {'refund' if i % 3 == 0 else 'crash' if i % 3 == 1 else 'other'} "
                                   "request about the order" for i in range(n)]})
    labels = ["refund", "crash", "other"]
    question, label_t = 'Does it ask for a "refund"? {text}', "Ticket: {text}"
    fill(frame, question, "filter", lambda p: json.dumps({"answer": verdict(p)[0]}), kw, tmp)
    fill(frame, label_t, "classify", lambda p: json.dumps({"label": (labels_in(p, labels) or labels[-1:])[0]}),
         kw, tmp, labels=labels)
    rates: dict[str, list[float]] = {}
    before = kw["sim"].count
    opts = {k: v for k, v in kw.items() if k != "sim"}
    calls = {"filter": lambda: frame.llm.filter(question, cache_dir=tmp, **opts),
             "classify": lambda: frame.llm.classify(label_t, labels=labels, cache_dir=tmp, **opts),
             # the baseline: generate with the filter's prompt and schema, in the same run
             "generate": lambda: frame.llm.generate(question, cache_dir=tmp, **semantic.call_of("filter"), **opts)}
    for path, memo in (("per-row", "0"), ("memo", "1"))[: 1 if args.paths == "per-row" else 2]:  # the per-row cache, then the memo
        os.environ[constants.MEMO_ENV_VAR] = memo
        if memo == "1":
            for call in calls.values():  # the first run with the memo writes it
                call()
        for _ in range(args.repeats):
            for name, call in calls.items():
                t0 = time.perf_counter()
                out = call()
                rates.setdefault(f"{name} {path}", []).append(n / (time.perf_counter() - t0))
                report = out.llm.report
                assert report["cached"] == n and report.get("memo_rows", 0) == (n if memo == "1" else 0)
    os.environ.pop(constants.MEMO_ENV_VAR)
    assert len(frame.llm.filter(question, cache_dir=tmp, **opts)) == (n + 2) // 3
    assert kw["sim"].count == before, "a cached re-run sent requests"
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--join-rows", type=int, default=2000)
    p.add_argument("--candidates", type=int, default=5)
    p.add_argument("--topk-rows", type=int, default=10_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--cached-rows", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--paths", choices=["per-row", "both"], default="both",
                   help="per-row: time the cached re-runs without the run memo only (a baseline before the memo)")
    p.add_argument("--cached-only", action="store_true", help="skip join and top_k")
    args = p.parse_args()
    with Simulator(answer=rule_answer, log=False) as sim, tempfile.TemporaryDirectory() as tmp:
        kw = {"model": MODEL, "base_url": sim.base_url, "api_key": sim.api_key, "progress": False,
              "cache_dir": str(Path(tmp) / "calls")}
        j = t = None
        if not args.cached_only:
            j = join(args, kw)
            print(f"join: {j}", file=sys.stderr)
            t = top_k(args, kw)
            print(f"top_k: {t}", file=sys.stderr)
        kw.pop("cache_dir")
        rates = cached(args, {**kw, "sim": sim}, str(Path(tmp) / "cached"))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("| operator | rows | model calls | naive method | ratio | target | result |")
    print("|---|---|---|---|---|---|---|")
    if j is not None:
        rows_of_calls(args, j, t)
    for name in ("filter", "classify"):
        for path, what in (("per-row", "per-row cache (run memo off)"), ("memo", "run memo")):
            if f"{name} {path}" not in rates:
                continue
            got, base = rates[f"{name} {path}"], med[f"generate {path}"]
            spread = f"{min(got):,.0f}-{max(got):,.0f}"
            print(f"| {name}, cached re-run, {what} | {args.cached_rows:,} | 0 sent | generate, same prompt and "
                  f"schema: {base:,.0f} rows/s | {med[f'{name} {path}']:,.0f} rows/s (median of {args.repeats}; "
                  f"{spread}); {med[f'{name} {path}'] / base:.2f}x generate | >= 100,000 rows/s | "
                  f"{'met' if med[f'{name} {path}'] >= 100_000 else 'NOT met'} |")


def rows_of_calls(args, j: dict, t: dict) -> None:
    """The table's join and top_k rows."""
    print(f"| join, candidates={args.candidates} | {args.join_rows:,} x {args.join_rows:,} | {j['calls']:,} | "
          f"{j['naive']:,} (all pairs) | {j['naive'] / j['calls']:,.0f}x fewer | <= 10,000 calls | "
          f"{'met' if j['calls'] <= 10_000 else 'NOT met'} ({j['true_found']:,} of {args.join_rows:,} true pairs "
          f"found, {j['seconds']:.1f} s) |")
    print(f"| top_k, k={args.k} | {t['n']:,} | {t['calls']:,} ({t['pairwise']:,} pairwise, a boundary of "
          f"{t['boundary']:,} rows) | {t['all_pairs']:,} (all pairs) | {t['all_pairs'] / t['calls']:,.0f}x fewer; "
          f"{t['calls'] / t['n']:.2f}n | < 2n calls | "
          f"{'met' if t['calls'] < 2 * t['n'] else 'NOT met'} (the rule's top {args.k} exactly: {t['exact']}, "
          f"{t['seconds']:.1f} s) |")


if __name__ == "__main__":
    main()
