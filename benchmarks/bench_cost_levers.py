"""Paying less (issue 24): provider prompt caching, rows_per_request and a cascade, priced with genai-prices.

    python benchmarks/bench_cost_levers.py [--rows 10000] [--instruction-tokens 2000] [--row-tokens 50]

One run on the loopback simulator (its prompt caches bill cached tokens in each protocol's usage fields, as the
providers do): N rows, a shared instruction of about 2,000 tokens and a row of about 50.

- Prompt caching: input cost with prompt_cache=False (what llmframe sent before, and Curator and LOTUS send:
  no cache_control, no prompt_cache_key) against the default, per provider's pricing. OpenAI and Gemini cache
  a repeated prefix by themselves, so there the naive run is discounted too, wherever the cache is hit.
- rows_per_request=10 against 1 (prompt caching off in both, so the figure is the packing's alone): requests
  sent, input cost, and whether every row got the answer it gets alone.
- A cascade gpt-4o-mini -> gpt-4o where the small model is sure of 80% of rows (token log-probabilities):
  its cost against gpt-4o alone, and its agreement with gpt-4o; and estimate's price of it beforehand.
- context= on Gemini 2.5 Flash: a 2,500-token instruction (past the documented 2,048-token minimum) as a shared
  document, in one explicit cached content (the default) against prompt_cache=False (inline, where only the
  implicit cache serves) and no cache at all.
- rows_per_request=10 in batch mode against 1 (OpenAI's batch API, GPT-4.1 mini's batch rates).

--only NAME[,NAME] runs some of them: caching, packing, cascade, context, batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import llmframe  # noqa: E402, F401
from llmframe.cost.prices import Pricer  # noqa: E402
from llmframe.testing.simulator import Simulator  # noqa: E402

PRICED = {"anthropic": ("anthropic:claude-sonnet-4-5", "anthropic"), "gemini": ("gemini:gemini-2.5-flash", "google"),
          "openai": ("openai:gpt-4.1-mini", "openai")}
ALSO_PRICED = {"openai": [("openai:gpt-4o-mini", "openai")]}  # the same requests and cached tokens, other rates


def frame(rows: int, row_tokens: int) -> pd.DataFrame:
    filler = "word " * max(1, row_tokens * 4 // 5 - 4)
    return pd.DataFrame({"review": [f"row {i:06d} {filler}"[: row_tokens * 4] for i in range(rows)]})


def instruction(tokens: int) -> str:
    rule = "Rule: judge the review below by the house guide, and answer with one word. "
    return (rule * (tokens * 4 // len(rule) + 1))[: tokens * 4] + "\nReview: "


def input_cost(model: str, price_id: str, out: pd.DataFrame) -> float:
    pricer = Pricer(model, price_id=price_id)
    inp = out["response_input_tokens"].to_numpy(dtype=float)
    cached = out["response_cached_input_tokens"].to_numpy(dtype=float)
    return float(pricer.costs(inp, np.zeros_like(inp), cached).sum())


def run(sim: Simulator, df: pd.DataFrame, template: str, model: str, cache_dir: str,
        **kwargs) -> tuple[pd.DataFrame, float]:
    base = {"anthropic": sim.anthropic_base_url, "gemini": sim.gemini_base_url}.get(model.split(":")[0], sim.base_url)
    start = time.perf_counter()
    out = df.llm.generate(template, model=model, base_url=base, api_key=sim.api_key, progress=False,
                          cache_dir=cache_dir, max_tokens=5, **kwargs)
    return out, time.perf_counter() - start


def prompt_caching(sim: Simulator, df: pd.DataFrame, template: str, tmp: Path) -> dict:
    out = {}
    for name, (model, price_id) in PRICED.items():
        costs, results = {}, {}
        for label, on in (("naive", False), ("cached", True)):
            sim.reset()
            result, wall = run(sim, df, template, model, str(tmp / f"{name}-{label}"), usage=True, prompt_cache=on)
            costs[f"{label}_cached_share"] = round(float(result["response_cached_input_tokens"].sum()
                                                         / result["response_input_tokens"].sum()), 4)
            costs[f"{label}_seconds"] = round(wall, 1)
            if on:
                costs["cost_saved_by_prompt_cache"] = result.llm.report.get("cost_saved_by_prompt_cache")
            results[label] = result
        for priced, priced_id in [(model, price_id), *ALSO_PRICED.get(name, [])]:
            out[priced] = _ratios(priced, priced_id, results, costs if priced == model else
                                  {k: v for k, v in costs.items() if k != "cost_saved_by_prompt_cache"})
    return out


def _ratios(model: str, price_id: str, results: dict, costs: dict) -> dict:
    """Input costs naive, cached and with no cache at all at one model's rates."""
    for label, result in results.items():
        costs[label] = input_cost(model, price_id, result)
    rate = Pricer(model, price_id=price_id).describe()
    costs["ratio"] = round(costs["naive"] / costs["cached"], 2)
    costs["no_cache_at_all"] = input_cost(model, price_id, results["cached"].assign(response_cached_input_tokens=0))
    costs["ratio_to_no_cache"] = round(costs["no_cache_at_all"] / costs["cached"], 2)
    costs["rates_mtok"] = {"input": rate["input_mtok"], "cache_read": rate["cache_read_mtok"]}
    print(f"  {model}: naive ${costs['naive']:.2f}, cached ${costs['cached']:.2f} ({costs['ratio']}x; "
          f"{costs['ratio_to_no_cache']}x against no cache at all)", file=sys.stderr)
    return costs


def packing(sim: Simulator, df: pd.DataFrame, template: str, tmp: Path) -> dict:
    model, price_id = PRICED["anthropic"]
    out = {}
    answers = {}
    for k in (1, 10):
        sim.reset()
        result, wall = run(sim, df, template, model, str(tmp / f"pack-{k}"), usage=True, prompt_cache=False,
                           rows_per_request=k)
        answers[k] = result["response"].tolist()
        out[k] = {"requests": sim.count, "input_cost": input_cost(model, price_id, result),
                  "input_tokens": int(result["response_input_tokens"].sum()),
                  "reported_input_tokens": result.llm.report["input_tokens"],
                  "seconds": round(wall, 1)}
        print(f"  rows_per_request={k}: {out[k]['requests']:,} requests, input ${out[k]['input_cost']:.2f}",
              file=sys.stderr)
    return {"model": model, "per_k": out, "requests_ratio": round(out[1]["requests"] / out[10]["requests"], 2),
            "input_cost_ratio": round(out[1]["input_cost"] / out[10]["input_cost"], 2),
            "every_row_aligned": answers[1] == answers[10]}


def cascade(sim: Simulator, df: pd.DataFrame, template: str, tmp: Path) -> dict:
    """gpt-4o-mini sure of 80% of rows (and right on 96% of those); on the rest unsure, and right half the time."""
    def draw(text: str, salt: str) -> float:
        import hashlib
        return int(hashlib.sha256((salt + text).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    def answer(body: dict) -> str:
        text = body["messages"][-1]["content"]
        truth = "positive" if draw(text, "t") < 0.5 else "negative"
        if body["model"] == "gpt-4o":
            return truth
        sure_row = draw(text, "s") < 0.8
        if (sure_row and draw(text, "w") >= 0.04) or (not sure_row and draw(text, "w") < 0.5):
            return truth  # sure: right 96% of the time; unsure: a coin toss
        return "negative" if truth == "positive" else "positive"

    def sure(body: dict, text: str) -> float:
        return 0.98 if body["model"] == "gpt-4o" or draw(body["messages"][-1]["content"], "s") < 0.8 else 0.45

    sim.reset()
    sim.answer, sim.confidence = answer, sure
    estimated = df.llm.estimate(template, model="openai:gpt-4o-mini", cascade=["openai:gpt-4o"], max_tokens=5,
                                cache_dir=str(tmp / "cascade")).cost
    start = time.perf_counter()
    out = df.llm.generate(template, model="openai:gpt-4o-mini", cascade=["openai:gpt-4o"], base_url=sim.base_url,
                          api_key=sim.api_key, progress=False, cache_dir=str(tmp / "cascade"), max_tokens=5)
    wall = time.perf_counter() - start
    big = [answer({"model": "gpt-4o", "messages": [{"content": template.format(review=r)}]}) for r in df.review]
    entry = out.llm.report["cascade"]
    agreement = float((out["response"] == pd.Series(big, index=out.index)).mean())  # gpt-4o's answers: its rule
    print(f"  cascade: {entry['rows_per_model']}, ${entry['cost']:.2f} against ${entry['cost_all_on_last_model']:.2f}"
          f" on gpt-4o alone, agreement {agreement:.3f}", file=sys.stderr)
    return {**entry, "agreement_with_last_model": round(agreement, 4), "seconds": round(wall, 1),
            "estimated_cost": [round(c, 4) for c in estimated]}


CONTEXT_TOKENS = 2500


def context_cache(sim: Simulator, df: pd.DataFrame, template: str, tmp: Path) -> dict:
    """The instruction as context= on Gemini: an explicit cached content against inline (implicit caching only)."""
    model, price_id = PRICED["gemini"]
    # Gemini 2.5's documented minimum for an explicit cache is 2,048 tokens: the instruction is made 2,500 long here
    document, row = instruction(max(CONTEXT_TOKENS, len(template) // 4)), "{review}"
    results, out = {}, {}
    for label, on in (("inline", False), ("explicit", True)):
        sim.reset()
        result, wall = run(sim, df, row, model, str(tmp / f"context-{label}"), usage=True, prompt_cache=on,
                           context=document)
        results[label] = result
        out[f"{label}_input_cost"] = input_cost(model, price_id, result)
        out[f"{label}_cached_share"] = round(float(result["response_cached_input_tokens"].sum()
                                                   / result["response_input_tokens"].sum()), 4)
        out[f"{label}_seconds"] = round(wall, 1)
        if on:
            out["cached_contents_made"] = len(sim.gemini_caches.created)
            out["cached_contents_left"] = len(sim.gemini_caches.live())
    out["no_cache_at_all"] = input_cost(model, price_id, results["explicit"].assign(response_cached_input_tokens=0))
    out["ratio_to_inline"] = round(out["inline_input_cost"] / out["explicit_input_cost"], 3)
    out["ratio_to_no_cache"] = round(out["no_cache_at_all"] / out["explicit_input_cost"], 2)
    out["same_answers"] = results["inline"]["response"].tolist() == results["explicit"]["response"].tolist()
    print(f"  context= on {model}: explicit ${out['explicit_input_cost']:.3f}, inline ${out['inline_input_cost']:.3f}"
          f", no cache ${out['no_cache_at_all']:.2f}", file=sys.stderr)
    return out


def batch_packing(sim: Simulator, df: pd.DataFrame, template: str, tmp: Path) -> dict:
    """rows_per_request=10 against 1 in batch mode (OpenAI's batch API), prompt caching off in both."""
    from llmframe.testing import BatchSettings

    model, price_id = PRICED["openai"]
    out, answers = {}, {}
    for k in (1, 10):
        sim.reset()
        sim.batches.settings = BatchSettings(seconds=0.1)
        result, wall = run(sim, df, template, model, str(tmp / f"batch-pack-{k}"), usage=True, prompt_cache=False,
                           rows_per_request=k, mode="batch", poll_interval=0.05)
        answers[k] = result["response"].tolist()
        pricer = Pricer(model, price_id=price_id, batch=True)
        inp = result["response_input_tokens"].to_numpy(dtype=float)
        out[k] = {"lines": sum(c.requests for c in sim.batches.created), "online_requests": sim.count,
                  "input_cost": float(pricer.costs(inp, np.zeros_like(inp)).sum()),
                  "rows_per_request": result.llm.report.get("rows_per_request"), "seconds": round(wall, 1)}
        print(f"  batch rows_per_request={k}: {out[k]['lines']:,} lines, input ${out[k]['input_cost']:.2f}",
              file=sys.stderr)
    return {"model": model, "per_k": out, "lines_ratio": round(out[1]["lines"] / out[10]["lines"], 2),
            "input_cost_ratio": round(out[1]["input_cost"] / out[10]["input_cost"], 2),
            "every_row_aligned": answers[1] == answers[10]}


SECTIONS = {"caching": prompt_caching, "packing": packing, "cascade": cascade, "context": context_cache,
            "batch": batch_packing}
NAMES = {"caching": "prompt_caching", "packing": "rows_per_request", "cascade": "cascade", "context": "context",
         "batch": "rows_per_request_batch"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--instruction-tokens", type=int, default=2000)
    parser.add_argument("--row-tokens", type=int, default=50)
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run: " + ", ".join(SECTIONS))
    args = parser.parse_args()
    df = frame(args.rows, args.row_tokens)
    template = instruction(args.instruction_tokens) + "{review}"
    results = {"rows": args.rows, "instruction_tokens": args.instruction_tokens, "row_tokens": args.row_tokens}
    with tempfile.TemporaryDirectory() as tmp, Simulator(log=False) as sim:
        for name in args.only.split(","):
            results[NAMES[name]] = SECTIONS[name](sim, df, template, Path(tmp))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
