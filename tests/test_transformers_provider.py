"""model="transformers:<path>": real inference on the tiny offline model, through df.llm.generate."""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
import pytest
from pydantic import BaseModel, Field

import llmframe
from llmframe.errors import ConfigError

from .conftest import ctrl_c_when

torch = pytest.importorskip("torch", reason="needs the transformers extra: pip install 'llmframe[transformers]'")
transformers = pytest.importorskip("transformers")

from llmframe.providers import local  # noqa: E402


@pytest.fixture
def model(llm_tiny_model):
    """The tiny model's model= string; every test starts with nothing loaded."""
    llmframe.unload()
    yield f"transformers:{llm_tiny_model}"
    llmframe.unload()


def frame(n: int = 10) -> pd.DataFrame:
    # Prompts of different lengths, so batches need padding and sorting changes the order.
    return pd.DataFrame({"q": [f"review {i}: " + "good fox " * (i % 5) for i in range(n)]},
                        index=pd.RangeIndex(100, 100 + n))


def generate(obj, template, model, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("max_tokens", 8)
    kwargs.setdefault("temperature", 0)
    return obj.llm.generate(template, model=model, **kwargs)


def by_hand(path, prompt_texts, *, max_new_tokens=8, add_special_tokens=False):
    """The reference: a hand-written model.generate, one prompt at a time (no padding at all)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    net = transformers.AutoModelForCausalLM.from_pretrained(path)
    answers = []
    for text in prompt_texts:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=add_special_tokens)
        with torch.inference_mode():
            out = net.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return answers, tokenizer


class Calls:
    """Counts the rows each real generate call of the loaded model was given."""

    def __init__(self, entry):
        self.sizes: list[int] = []
        real = entry.model.generate

        def counted(*args, **kwargs):
            self.sizes.append(kwargs["input_ids"].shape[0])
            return real(*args, **kwargs)

        entry.model.generate = counted


def loaded_entry():
    (entry,) = local._LOADED.values()
    return entry


def test_import_llmframe_loads_no_torch_nor_vllm():
    code = "import sys, llmframe; print([m for m in ('torch', 'transformers', 'vllm') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_chat_template_and_system_prompt_applied_answers_match_a_hand_written_loop(model, llm_tiny_model):
    df = frame(6)
    out = generate(df, "Sentiment: {q}", model, system="Answer in one word.")
    chats = [[{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": f"Sentiment: {q}"}]
             for q in df.q]
    tokenizer = transformers.AutoTokenizer.from_pretrained(llm_tiny_model)
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    assert texts[0].startswith("<s><|system|>\nAnswer in one word.</s>") and texts[0].endswith("<|assistant|>\n")
    expected, _ = by_hand(llm_tiny_model, texts)
    assert out["response"].tolist() == expected  # batched, padded, sorted and restored: the same answers
    assert out.index.equals(df.index)
    report = out.attrs["llmframe"]
    assert report["input_tokens"] == sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert report["output_tokens"] == 6 * 8 and report["finish_reasons"] == {"length": 6}


def test_chat_template_false_sends_the_raw_prompt(model, llm_tiny_model):
    df = frame(4)
    out = generate(df, "Sentiment: {q}", model, provider_options={"chat_template": False})
    expected, _ = by_hand(llm_tiny_model, [f"Sentiment: {q}" for q in df.q], add_special_tokens=True)
    assert out["response"].tolist() == expected
    chat = generate(df, "Sentiment: {q}", model, cache=False)
    assert chat["response"].tolist() != out["response"].tolist()  # the template changed the prompt


def test_batches_keep_row_order_and_sizes(model):
    df = frame(11)
    one = generate(df, "{q}", model, provider_options={"batch_size": 1}, cache=False)
    calls = Calls(loaded_entry())
    batched = generate(df, "{q}", model, provider_options={"batch_size": 4}, cache=False)
    assert batched["response"].tolist() == one["response"].tolist()
    assert calls.sizes == [4, 4, 3]


def test_cache_rerun_neither_reloads_nor_regenerates(model, cache_dir):
    df = frame(8)
    first = generate(df, "{q}", model)
    entry = loaded_entry()
    calls = Calls(entry)
    again = generate(df, "{q}", model)
    assert loaded_entry() is entry and calls.sizes == []
    assert again.attrs["llmframe"]["cached"] == 8
    pd.testing.assert_frame_equal(first, again, check_like=True)
    assert llmframe.unload() == 1 and local._LOADED == {}
    generate(df, "{q}", model)
    assert local._LOADED == {}  # all answers cached: the model is not even loaded


class Review(BaseModel):
    positive: bool
    stars: int = Field(ge=1, le=5)
    label: str = Field(max_length=6)


def test_structured_output_is_constrained_valid_and_typed(model):
    df = frame(12)
    out = generate(df, "Rate: {q}", model, output=Review, max_tokens=40, temperature=None)
    assert out["review_error"].isna().all(), out["review_error"].dropna().tolist()
    assert str(out["positive"].dtype) == "boolean" and str(out["stars"].dtype) == "Int64"
    assert out["stars"].between(1, 5).all() and (out["label"].str.len() <= 6).all()
    assert out.attrs["llmframe"]["failed"] == 0


def test_the_grammar_makes_the_model_write_the_fields_in_the_schemas_order(model, cache_dir):
    from llmframe.stores.diskcache import open_store
    from llmframe.plan.request import Response

    # Not alphabetical, on purpose: a schema that puts one field before another means it.
    schema = {"type": "object", "title": "Verdict", "required": ["sentiment", "score"],
              "properties": {"sentiment": {"type": "string", "maxLength": 6},
                             "score": {"type": "integer", "minimum": 1, "maximum": 5}}}
    out = generate(frame(4), "Rate: {q}", model, output=schema, max_tokens=40, temperature=None)
    assert out["verdict_error"].isna().all(), out["verdict_error"].dropna().tolist()
    texts = [r.text for r in Response.many_from_cache([v for _k, v in open_store(cache_dir)._entries()])]
    assert len(texts) == 4 and all(t.startswith('{"sentiment"') for t in texts), texts


def test_a_json_answer_cut_off_by_max_tokens_is_a_row_error_not_a_crash(model):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "word": {"type": "string"}},
              "required": ["n", "word"], "title": "Count"}
    out = generate(frame(6), "Count: {q}", model, output=schema, max_tokens=3, max_failures_in_a_row=2)
    assert out["count_error"].str.contains("max_tokens").all()
    assert out["n"].isna().all() and out.attrs["llmframe"]["failed"] == 6


def test_out_of_memory_halves_the_batch_and_finishes(model):
    # No GPU here, so the out-of-memory error is injected at the batch boundary: a generate call
    # given more than 2 rows raises torch.OutOfMemoryError, as CUDA would, before doing any work.
    df = frame(9)
    expected = generate(df, "{q}", model, cache=False)["response"].tolist()
    entry = loaded_entry()
    real, sizes = entry.model.generate, []

    def small_memory(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        if sizes[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        return real(*args, **kwargs)

    entry.model.generate = small_memory
    with pytest.warns(RuntimeWarning, match="batch size lowered to 4.*|out of memory"):
        out = generate(df, "{q}", model, cache=False, provider_options={"batch_size": 8})
    assert out["response"].tolist() == expected and out["response_error"].str.contains("max_tokens").all()
    assert sizes == [8, 4, 2, 2, 2, 2, 1]  # halved twice, then kept small for the rest of the run


def test_ctrl_c_stops_between_batches_and_keeps_finished_rows(model):
    df = frame(40)
    generate(df.head(1), "warm {q}", model)  # load the model outside the timed part
    calls = Calls(loaded_entry())
    lock = loaded_entry().lock

    ctrl_c_when(lambda: len(calls.sizes) >= 3)
    with pytest.raises(KeyboardInterrupt):
        generate(df, "{q}", model, provider_options={"batch_size": 2}, max_tokens=64)
    # The generate call running at the interrupt is told to stop, and no other starts: wait for the model
    # to be idle and the count of calls to stay put, with a deadline.
    deadline, seen, quiet_since = time.monotonic() + 30, -1, time.monotonic()
    while time.monotonic() < deadline and not (len(calls.sizes) == seen and not lock.locked()
                                               and time.monotonic() - quiet_since > 0.5):
        if len(calls.sizes) != seen:
            seen, quiet_since = len(calls.sizes), time.monotonic()
        time.sleep(0.05)
    stopped_after = len(calls.sizes)
    assert stopped_after < 20
    calls.sizes.clear()
    out = generate(df, "{q}", model, provider_options={"batch_size": 2}, max_tokens=64)
    finished = out.attrs["llmframe"]["cached"]
    assert finished >= 2 * 2  # at least the batches before the interrupt were kept
    assert sum(calls.sizes) == 40 - finished and out["response"].notna().all()


def test_bad_model_and_options_fail_before_anything_runs(model, tmp_path):
    with pytest.raises(ConfigError, match="cannot load transformers model"):
        generate(frame(2), "{q}", f"transformers:{tmp_path / 'nowhere'}")
    with pytest.raises(ConfigError, match=r"unknown provider_options \['batchsize'\]"):
        generate(frame(2), "{q}", model, provider_options={"batchsize": 4})
    with pytest.raises(ConfigError, match="batch_size"):
        generate(frame(2), "{q}", model, provider_options={"batch_size": 0})
    with pytest.raises(ConfigError, match="base_url"):
        generate(frame(2), "{q}", model, base_url="http://127.0.0.1:1")
    assert local._LOADED == {}


def test_stop_strings_and_seeded_sampling(model):
    df = frame(4)
    free = generate(df, "{q}", model, max_tokens=12, cache=False)
    word = free["response"].iloc[0][3:6]
    cut = generate(df, "{q}", model, max_tokens=12, stop=[word], cache=False)
    assert cut["response"].iloc[0] == free["response"].iloc[0][: free["response"].iloc[0].index(word)]
    assert pd.isna(cut["response_error"].iloc[0])  # finish_reason "stop"
    a = generate(df, "{q}", model, temperature=1.0, seed=7, cache=False)["response"].tolist()
    b = generate(df, "{q}", model, temperature=1.0, seed=7, cache=False)["response"].tolist()
    assert a == b and a != free["response"].tolist()


@pytest.mark.parametrize("prefix, sdk", [("transformers", "torch"), ("vllm", "vllm")])
def test_a_missing_engine_names_the_extra_to_install(prefix, sdk, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, f"llmframe.providers.{prefix}", raising=False)
    monkeypatch.setitem(sys.modules, sdk, None)  # what an environment without it looks like to import
    with pytest.raises(ConfigError, match=rf"pip install 'llmframe\[{prefix}\]'"):
        generate(frame(2), "{q}", f"{prefix}:{tmp_path}")


def hand_confidences(path, texts, max_new_tokens=8):
    """exp of the mean log-probability of each greedy answer's tokens, one prompt at a time (the reference)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    net = transformers.AutoModelForCausalLM.from_pretrained(path)
    found = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = net.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, output_scores=True,
                               return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
        chosen = out.sequences[0, ids["input_ids"].shape[1]:]
        logs = [torch.log_softmax(score[0].float(), -1)[t].item() for score, t in zip(out.scores, chosen)]
        found.append(float(torch.tensor(logs).mean().exp()))
    return found


def test_a_cascade_reads_the_local_models_token_log_probabilities(model, llm_tiny_model, sim, monkeypatch):
    """The tiny model's confidence is its answer's token log-probabilities (from generate's scores): the rows below
    the threshold, and only those, go on to the next model (the simulator's, reached by its environment
    variables: model='s options are the local model's)."""
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", sim.api_key)
    df = frame(8)
    tokenizer = transformers.AutoTokenizer.from_pretrained(llm_tiny_model)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": f"Sentiment: {q}"}],
                                           add_generation_prompt=True, tokenize=False) for q in df.q]
    expected = hand_confidences(llm_tiny_model, texts)
    assert all(0 < c <= 1 for c in expected)
    threshold = sorted(expected)[4]  # the four least sure rows go on
    out = generate(df, "Sentiment: {q}", model, cascade=[("openai:big", threshold)],
                   provider_options={"batch_size": 3}, prices={"openai:big": {"input_mtok": 1, "output_mtok": 1}})
    sent = sorted(e.body["messages"][-1]["content"] for e in sim.requests)
    assert sent == sorted(f"Sentiment: {q}" for q, c in zip(df.q, expected) if c < threshold)
    assert "logprobs" not in sim.requests[0].body  # the last model needs no confidence
    entry = out.attrs["llmframe"]["cascade"]
    assert entry["rows_per_model"] == {model: 4, "openai:big": 4}
