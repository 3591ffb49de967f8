"""Local models: tokens/s of llmframe vs a hand-written loop on the same prompts and the same model.

    python benchmarks/bench_local.py --engine transformers [--rows 256] [--repeats 3]
    /work/venvs/vllm/bin/python benchmarks/bench_local.py --engine vllm

transformers: llmframe's generate vs `model.generate` over batches of the same size, in input order.
vLLM: llmframe's generate vs one raw `LLM.chat` call with every prompt. Both sides get the same
chat-templated prompts, greedy decoding, and exactly --tokens new tokens per row (min = max), with the
model loaded beforehand and the cache off, interleaved repeats; prints one JSON line.
The model is the tiny offline test model unless --model names another folder.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def prompts(rows: int) -> list[str]:
    # Lengths vary, as real reviews do: padding matters for batched generation.
    return [f"Review {i}: " + "the fox was quick and the dog was lazy " * (1 + i % 7) for i in range(rows)]


def hand_transformers(path: str, texts: list[str], batch: int, tokens: int) -> int:
    """The hand-written baseline: chat template, left padding, model.generate per batch of `batch` rows."""
    import torch
    import transformers

    if path not in _MODELS:  # loaded once, before timing, like llmframe's model
        device = "cuda" if torch.cuda.is_available() else "cpu"
        _MODELS[path] = (transformers.AutoTokenizer.from_pretrained(path, padding_side="left"),
                         transformers.AutoModelForCausalLM.from_pretrained(path).eval().to(device))
    tokenizer, model = _MODELS[path]
    generated = 0
    for start in range(0, len(texts), batch):
        chats = [[{"role": "user", "content": t}] for t in texts[start:start + batch]]
        rendered = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
        enc = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        generated += int(new.numel())
        tokenizer.batch_decode(new, skip_special_tokens=True)
    return generated


_MODELS: dict = {}


def hand_vllm(path: str, texts: list[str], tokens: int) -> int:
    """The raw baseline: one LLM.chat call with every prompt (the same engine llmframe uses)."""
    from vllm import SamplingParams

    llm = _vllm_engine(path)
    sampling = SamplingParams(temperature=0, max_tokens=tokens, min_tokens=tokens)
    outs = llm.chat([[{"role": "user", "content": t}] for t in texts], sampling, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs)


def _vllm_engine(path: str):
    """The engine llmframe started (one engine per process: a second would halve the memory of each)."""
    from llmframe.providers import local

    (engine,) = [v for k, v in local._LOADED.items() if k[0] == "vllm" and k[1] == path]
    return engine.llm


def with_llmframe(model: str, texts: list[str], tokens: int, options: dict, params: dict) -> int:
    import pandas as pd

    import llmframe  # noqa: F401

    frame = pd.DataFrame({"text": texts})
    out = frame.llm.generate("{text}", model=model, max_tokens=tokens, temperature=0, params=params,
                             cache=False, progress=False, provider_options=options)
    report = out.attrs["llmframe"]
    assert report["failed"] == 0, report["errors"]
    return report["output_tokens"]


def measure(run, texts: list[str]) -> tuple[int, float, float]:
    """(tokens made, wall seconds, CPU seconds of this process, all its threads) of one run."""
    started, cpu = time.perf_counter(), time.process_time()
    made = run(texts)
    return made, time.perf_counter() - started, time.process_time() - cpu


def side(engine: str, name: str, path: str, args: argparse.Namespace):
    """One side of the comparison as a function of the prompts: llmframe's generate or the hand-written loop."""
    if engine == "transformers":
        options, params = {"batch_size": args.batch}, {"min_new_tokens": args.tokens}
        if name == "hand-written":
            return lambda t: hand_transformers(path, t, args.batch, args.tokens)
    else:
        options = {"llm_kwargs": {"enforce_eager": True, "max_model_len": 1024, "kv_cache_memory_bytes": 256 * 2**20}}
        params = {"min_tokens": args.tokens}
        if name == "hand-written":
            return lambda t: hand_vllm(path, t, args.tokens)
    return lambda t: with_llmframe(f"{engine}:{path}", t, args.tokens, options, params)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("transformers", "vllm"), required=True)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16, help="transformers: rows per generate call, both sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="a model folder (default: the tiny test model, built now)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = args.model
    if path is None:
        from llmframe.testing.tiny_model import build_tiny_model

        path = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="llmframe-bench-")) / "tiny"))
    texts, names = prompts(args.rows), ("llmframe", "hand-written")
    results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in names}
    if args.engine == "transformers":
        import torch
        import transformers

        version = (f"transformers {transformers.__version__}, torch {torch.__version__}, "
                   f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    else:
        import vllm

        version = f"vllm {vllm.__version__}"
    runs = {name: side(args.engine, name, path, args) for name in names}
    for run in runs.values():  # warm-up: load the model, and meet every prompt shape once (torch's CPU
        run(texts)             # kernels are prepared per shape: a first pass costs many times the next)
    for _ in range(args.repeats):  # interleaved: both sides see the same load on a shared machine
        for name, run in runs.items():
            results[name].append(measure(run, texts))
    if args.engine == "vllm":
        import llmframe

        llmframe.unload()
    rates = {k: [made / wall for made, wall, _ in v] for k, v in results.items()}
    medians = {k: statistics.median(v) for k, v in rates.items()}
    line = {
        "engine": args.engine, "version": version, "rows": args.rows, "tokens_per_row": args.tokens,
        "batch": args.batch if args.engine == "transformers" else None, "repeats": args.repeats,
        "tokens_per_s": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "median_tokens_per_s": {k: round(v, 1) for k, v in medians.items()},
        "ratio": round(medians["llmframe"] / medians["hand-written"], 3),
        "target": 0.95 if args.engine == "transformers" else 0.97,
    }
    if args.engine == "transformers":  # CPU time is steadier than wall time on a shared machine (vLLM's is elsewhere)
        cpu = {k: statistics.median(made / seconds for made, _, seconds in v) for k, v in results.items()}
        line["cpu_ratio"] = round(cpu["llmframe"] / cpu["hand-written"], 3)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
