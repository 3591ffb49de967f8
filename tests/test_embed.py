"""df.llm.embed against the simulator through the real SDKs: the vector column, packs, cache, faults, bad input."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import llmframe
from llmframe import options
from llmframe.engine.packs import Packer
from llmframe.errors import BudgetExceeded, ConfigError
from llmframe.faces.pandas import DataFrameAccessor, SeriesAccessor
from llmframe.testing import Faults

from .conftest import ctrl_c_when

MODEL = "openai:text-embedding-3-small"
WORDS = ["apple", "pie", "red", "green", "car", "engine", "blue", "tart", "river", "stone", "cloud", "paper"]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 4)) + f" w{i}" for i in range(n)]


@pytest.fixture
def embed(sim):
    """Call obj.llm.embed against the simulator's OpenAI route, without a progress bar."""

    def call(obj, template="{}", **kwargs):
        kwargs.setdefault("model", MODEL)
        kwargs.setdefault("base_url", sim.base_url)
        kwargs.setdefault("api_key", sim.api_key)
        kwargs.setdefault("progress", False)
        return obj.llm.embed(template, **kwargs)

    return call


def embedding_requests(sim) -> list:
    return [r for r in sim.requests if r.path.endswith("embeddings") or "EmbedContent" in r.path]


def test_vector_column_is_arrow_fixed_size_list_aligned_to_the_index(sim, embed):
    df = pd.DataFrame({"title": ["Red apple", "Blue car", None, "Green apple", "Red apple"],
                       "body": ["pie", "engine", "x", "tart", "pie"]}, index=[10, 3, 7, 42, 5])
    out = embed(df, "{title}: {body}", dimensions=32)
    column = out["embedding"]
    assert isinstance(column.dtype, pd.ArrowDtype)
    assert column.dtype.pyarrow_dtype == pa.list_(pa.float32(), 32)
    assert list(out.index) == [10, 3, 7, 42, 5]
    assert column.isna().tolist() == [False, False, True, False, False]
    assert "missing value" in out.loc[7, "embedding_error"]
    matrix = llmframe.vectors(column)
    assert matrix.shape == (5, 32) and matrix.dtype == np.float32
    assert np.isnan(matrix[2]).all() and np.allclose(np.linalg.norm(matrix[[0, 1, 3, 4]], axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(matrix[0], matrix[4])  # the same text, asked once
    report = out.attrs["llmframe"]
    assert report["rows"] == 5 and report["skipped"] == 1 and report["deduplicated"] == 1
    assert report["requests_sent"] == 3 and report["output_tokens"] == 0 and report["input_tokens"] > 0
    # Every distinct text went in one request, with the dimensions asked for.
    (request,) = embedding_requests(sim)
    assert request.body["input"] == ["Red apple: pie", "Blue car: engine", "Green apple: tart"]
    assert request.body["dimensions"] == 32 and request.body["encoding_format"] == "base64"


def test_series_gives_a_series_of_vectors_and_a_view_of_its_memory(embed):
    s = pd.Series(["a red apple", "a blue car"], index=["x", "y"], name="text")
    out = embed(s, dimensions=16)
    assert isinstance(out, pd.Series) and out.name == "embedding" and list(out.index) == ["x", "y"]
    first, again = llmframe.vectors(out), llmframe.vectors(out)
    assert np.shares_memory(first, again)  # a view of the Arrow buffer, not a copy
    assert first.shape == (2, 16)


def test_texts_that_share_words_are_closer(embed):
    out = embed(pd.Series(["red apple pie", "red apple tart", "blue car engine"]), dimensions=256)
    m = llmframe.vectors(out)
    assert m[0] @ m[1] > 0.5 > abs(m[0] @ m[2])


def test_many_rows_go_in_one_request_up_to_batch_size(sim, embed):
    s = pd.Series(texts(700))
    out = embed(s, dimensions=8, batch_size=100, max_concurrency=2)
    assert out.notna().all()
    sizes = [len(r.body["input"]) for r in embedding_requests(sim)]
    assert sum(sizes) == 700 and max(sizes) == 100 and len(sizes) == 7


def test_packs_are_cut_by_estimated_tokens_and_carry_the_row_that_does_not_fit():
    packer = Packer(max_inputs=10, max_tokens=25)
    texts_ = ["a" * 40, "b" * 40, "c" * 40, "d" * 4]  # 10, 10, 10 and 1 tokens
    assert packer.add([0, 1, 2, 3], texts_) == [([0, 1], texts_[:2])]
    assert packer.rest() == ([2, 3], texts_[2:]) and packer.rest() is None


def test_packs_fill_across_chunks_and_stop_at_their_count():
    packer = Packer(max_inputs=3, max_tokens=1000)
    assert packer.add([0, 1], ["x", "y"]) == []  # a pack not full waits for the next chunk's rows
    assert packer.add([2, 3, 4, 5, 6], list("zabcd")) == [([0, 1, 2], ["x", "y", "z"]), ([3, 4, 5], ["a", "b", "c"])]
    assert packer.rest() == ([6], ["d"])


def test_a_cached_rerun_sends_nothing_and_gives_the_same_vectors(sim, embed):
    s = pd.Series(texts(300))
    first = llmframe.vectors(embed(s, dimensions=24))
    sent = sim.count
    again = embed(s, dimensions=24)
    assert sim.count == sent and again.attrs["llmframe"]["cached"] == 300
    np.testing.assert_array_equal(llmframe.vectors(again), first)
    embed(s, dimensions=12)  # dimensions are part of the key
    assert sim.count > sent


def test_a_refused_pack_is_split_until_the_bad_row_fails_alone(sim, embed):
    sim.embedding_input_tokens = 50  # the server's limit: below what the plan checks (8,191 estimated tokens)
    rows = texts(40)
    rows[13] = "long " * 100
    out = embed(pd.DataFrame({"text": rows}), "{text}", dimensions=8)
    failed = out["embedding"].isna()
    assert failed.tolist() == [i == 13 for i in range(40)]
    assert "maximum context length" in out.loc[13, "embedding_error"]
    assert out.attrs["llmframe"]["failed"] == 1
    # Halves were tried: the log has the whole pack, then smaller ones, down to the bad row alone.
    sizes = [len(r.body["input"]) for r in embedding_requests(sim)]
    assert sizes[0] == 40 and 1 in sizes


def test_server_errors_are_retried_and_every_row_is_answered(sim, embed):
    sim.faults = Faults(error_rates={500: 0.3, 429: 0.2}, retry_after=0.01, seed=3)
    out = embed(pd.Series(texts(500)), dimensions=8, batch_size=50, max_attempts=12)
    assert out.notna().all()
    assert out.attrs["llmframe"]["retries"] > 0


def test_tpm_from_the_servers_headers_is_respected(sim, embed):
    sim.faults = Faults(tpm=60_000, burst_seconds=1.0)  # 1,000 tokens a second; a pack is about 300
    out = embed(pd.Series(texts(400)), dimensions=8, batch_size=40, max_concurrency=2)
    assert out.notna().all()
    report = out.attrs["llmframe"]
    # Paced by what the headers said: only the first two packs, sent before any header came, can be refused.
    assert report["rate_limited"] <= 2 and report["requests_sent"] == 400


def test_an_interrupted_run_keeps_its_finished_vectors(sim, embed):
    sim.latency = 0.05
    s = pd.Series(texts(400))
    ctrl_c_when(lambda: sim.count >= 3)
    with pytest.raises(KeyboardInterrupt):
        embed(s, dimensions=8, batch_size=20, max_concurrency=1)
    sent = sim.count
    out = embed(s, dimensions=8, batch_size=20, max_concurrency=1)
    assert out.notna().all()
    report = out.attrs["llmframe"]
    assert report["cached"] >= 20 and report["requests_sent"] == 400 - report["cached"]
    assert sim.count - sent < 20


def test_usage_cost_estimate_and_max_cost(sim, embed):
    s = pd.Series(texts(200))
    guess = s.llm.estimate_embed(model=MODEL, base_url=sim.base_url, dimensions=8)
    assert guess.uncached_requests == 200 and guess.output_tokens == (0, 0) and guess.cost[1] > 0
    assert sim.count == 0
    out = embed(s.to_frame("text"), "{text}", dimensions=8, usage=True)
    assert out["embedding_input_tokens"].sum() == out.attrs["llmframe"]["input_tokens"] > 0
    assert (out["embedding_output_tokens"] == 0).all() and out["embedding_cost"].sum() > 0
    with pytest.raises(BudgetExceeded) as caught:
        embed(pd.Series(texts(200, seed=1)), dimensions=8, max_cost=1e-6, batch_size=10)
    assert caught.value.report["budget"]["rows_not_sent"] > 0


def test_max_cost_mid_pack_sends_what_the_budget_affords_and_ends(sim, embed):
    s = pd.Series(texts(400, seed=2))
    whole = s.llm.estimate_embed(model=MODEL, base_url=sim.base_url, dimensions=8).cost[1]
    with pytest.raises(BudgetExceeded) as caught:  # packs of 64 rows: the budget runs out inside one
        embed(s, dimensions=8, max_cost=whole / 2, usage=True)
    report = caught.value.report
    assert 0 < report["budget"]["rows_not_sent"] < 400 and report["cost"] <= whole / 2
    sizes = [len(r.body["input"]) for r in embedding_requests(sim)]
    assert sum(sizes) == 400 - report["budget"]["rows_not_sent"] and max(sizes) <= 64


def test_gemini_embeds_through_the_sdk_with_task_type_and_dimensions(sim):
    s = pd.Series(texts(250))
    out = s.llm.embed(model="gemini:gemini-embedding-001", base_url=sim.gemini_base_url, api_key=sim.api_key,
                      dimensions=16, task_type="RETRIEVAL_DOCUMENT", progress=False, max_concurrency=1)
    assert llmframe.vectors(out).shape == (250, 16) and out.notna().all()
    requests = embedding_requests(sim)
    assert max(len(r.body["requests"]) for r in requests) == 100  # Gemini's most per batch call
    first = requests[0].body["requests"][0]
    assert first["taskType"] == "RETRIEVAL_DOCUMENT" and first["outputDimensionality"] == 16


def test_the_sdk_transport_embeds_too(sim, embed):
    out = embed(pd.Series(["red apple", "blue car"]), dimensions=8, provider_options={"transport": "sdk"})
    assert llmframe.vectors(out).shape == (2, 8)


# --- bad input, refused before anything is sent ---------------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    ({"model": "openai:gpt-4o-mini", "base_url": None}, "is a chat model"),
    ({"dimensions": 5000, "base_url": None}, "at most 1536 dimensions"),
    ({"model": "openai:text-embedding-ada-002", "dimensions": 8, "base_url": None}, "cannot take dimensions"),
    ({"model": "anthropic:claude-haiku-4-5"}, "no embedding API"),
    ({"dimensions": 0}, "dimensions must be an integer >= 1"),
    ({"truncate": "yes"}, "truncate must be True or False"),
    ({"temperature": 0}, "unknown option"),
])
def test_bad_arguments_are_refused_before_sending(sim, embed, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        embed(pd.Series(["a red apple"]), **kwargs)
    assert sim.count == 0


def test_anthropic_names_the_alternatives(sim, embed):
    with pytest.raises(ConfigError, match="Voyage AI.*openai:text-embedding-3-small"):
        embed(pd.Series(["x"]), model="anthropic:claude-haiku-4-5")


def test_generate_refuses_an_embedding_model(sim):
    with pytest.raises(ConfigError, match="is an embedding model.*df.llm.embed"):
        pd.Series(["x"]).llm.generate("{}", model=MODEL, api_key="k", progress=False)


def test_every_row_empty_or_missing_is_refused(sim, embed):
    with pytest.raises(ConfigError, match="every row was refused.*empty"):
        embed(pd.Series(["", None, ""]))
    assert sim.count == 0


def test_an_input_over_the_models_limit_fails_its_row_unless_truncated(sim, embed):
    rows = pd.Series(["red apple", "word " * 8000])  # about 10,000 estimated tokens > 8,191
    out = embed(rows.to_frame("text"), "{text}", dimensions=8)
    assert out["embedding"].isna().tolist() == [False, True]
    assert "too long" in out.loc[1, "embedding_error"]
    sim.embedding_input_tokens = None
    cut = embed(rows, dimensions=8, truncate=True)
    assert cut.notna().all()
    assert max(len(t) for r in embedding_requests(sim) for t in r.body["input"]) <= 8191 * 4


def test_embed_takes_the_embed_options_in_the_tables_order():
    for accessor in (DataFrameAccessor, SeriesAccessor):
        for method in ("embed", "aembed", "estimate_embed"):
            params = [p for p in inspect.signature(getattr(accessor, method)).parameters.values()
                      if p.kind is p.KEYWORD_ONLY]
            assert [p.name for p in params] == [o.name for o in options.EMBED_OPTIONS]
            assert [p.default for p in params] == [o.default for o in options.EMBED_OPTIONS]


def test_a_damaged_cached_vector_is_a_miss_and_the_others_still_read():
    import base64

    from llmframe.engine.vectors import Vectors

    found = Vectors(3)
    cached = [base64.b64encode(np.full(4, k, "<f4").tobytes()).decode() for k in range(3)]
    cached[1] = "!" + cached[1][1:]  # not base64 any more
    assert found.put_encoded(np.arange(3), cached).tolist() == [False, True, False]
    np.testing.assert_array_equal(found.matrix[[0, 2]], [[0] * 4, [2] * 4])


def test_truncate_cuts_by_the_models_tiktoken_encoding_where_it_has_one(sim, embed, monkeypatch):
    tiktoken = pytest.importorskip("tiktoken")
    from llmframe.providers import openai as openai_module

    # A real tiktoken Encoding built offline (one token per byte): the exact cut is checkable, and no
    # encoding file needs downloading.
    encoding = tiktoken.Encoding("bytes", pat_str=r".", mergeable_ranks={bytes([i]): i for i in range(256)},
                                 special_tokens={})
    monkeypatch.setattr(openai_module, "_encoding", lambda model: encoding)
    sim.embedding_input_tokens = None
    out = embed(pd.Series(["red apple", "word " * 8000]), dimensions=8, truncate=True)
    assert out.notna().all()
    sent = [t for r in embedding_requests(sim) for t in r.body["input"]]
    assert sorted(map(len, sent)) == [len("red apple"), 8191]  # exactly the model's 8,191 tokens


def test_media_for_a_text_embedding_model_are_refused_before_sending_naming_one_that_takes_them(sim, embed):
    frame = pd.DataFrame({"photo": [b"\x89PNG..."], "title": ["boots"]})
    for template in (["{title}", llmframe.image("photo")],
                     [{"role": "user", "content": ["{title}", llmframe.document("photo")]}]):
        with pytest.raises(ConfigError, match="embeds text only.*gemini:gemini-embedding-2.*describe the media first"):
            embed(frame, template)
    with pytest.raises(ConfigError, match="gemini:gemini-embedding-001 embeds text only"):
        embed(frame, ["{title}", llmframe.image("photo")], model="gemini:gemini-embedding-001",
              base_url=sim.gemini_base_url)
    assert sim.count == 0
