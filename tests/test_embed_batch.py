"""df.llm.embed(mode="batch"): OpenAI's batch API with /v1/embeddings lines, against the simulator's batch API."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from google.genai._common import ExperimentalWarning

import llmframe
from llmframe.errors import ConfigError
from llmframe.testing import embeddings as sim_embeddings
from llmframe.testing.batches import BatchSettings

from .test_embed import MODEL, embed, texts  # noqa: F401  (the fixture)


def expected(rows: list[str], dimensions: int) -> np.ndarray:
    return np.stack([sim_embeddings.vector(t, dimensions) for t in rows])


def test_a_batch_embed_gives_the_vectors_and_an_online_rerun_hits_the_cache(sim, embed):
    sim.batches.settings = BatchSettings(seconds=0.1)
    rows = texts(50)
    out = embed(pd.DataFrame({"t": rows}), "{t}", dimensions=16, mode="batch", poll_interval=0.02, usage=True)
    np.testing.assert_allclose(llmframe.vectors(out["embedding"]), expected(rows, 16), rtol=1e-6)
    assert [(c.vendor, c.requests) for c in sim.batches.created] == [("openai", 50)]
    (made,) = sim.batches.created
    lines = sim.batches.requests(made.id)
    # /v1/embeddings bodies (the simulator's batch API refuses any other line in an embeddings batch)
    assert sorted(line["input"] for line in lines) == sorted(rows)
    assert all(line["dimensions"] == 16 and line["encoding_format"] == "base64" for line in lines)
    assert out["embedding_input_tokens"].sum() > 0 and sim.count == 0  # no online request
    again = embed(pd.DataFrame({"t": rows}), "{t}", dimensions=16)
    assert again.attrs["llmframe"]["cached"] == 50 and sim.count == 0
    np.testing.assert_array_equal(llmframe.vectors(again["embedding"]), llmframe.vectors(out["embedding"]))


def test_failed_lines_are_sent_online_with_retry_online(sim, embed):
    sim.batches.settings = BatchSettings(seconds=0.05, error_rate=0.3)
    rows = texts(40, seed=3)
    out = embed(pd.Series(rows), dimensions=8, mode="batch", poll_interval=0.02, retry_online=True)
    np.testing.assert_allclose(llmframe.vectors(out), expected(rows, 8), rtol=1e-6)
    assert sim.count > 0  # the failed lines went online, in packs


def test_a_provider_without_a_batch_api_for_embeddings_is_refused_or_runs_online_on_auto(sim, embed):
    with pytest.raises(ConfigError, match="no batch API for embeddings"):  # refused while planning: nothing loads
        embed(pd.Series(["a b"]), model="transformers:/no/such/encoder", mode="batch")
    out = embed(pd.Series(["a b"]), model="gemini:gemini-embedding-001", base_url=sim.gemini_base_url,
                mode="auto", dimensions=8)
    assert out.notna().all() and not sim.batches.created  # one row: not worth a batch


def test_gemini_batch_embeddings_go_through_create_embeddings_keyed_lines(sim, embed, cache_dir):
    sim.batches.settings = BatchSettings(seconds=0.1)
    rows = texts(30, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExperimentalWarning)  # the SDK's "experimental": not the user's business
        out = embed(pd.DataFrame({"t": [*rows, ""]}), "{t}", model="gemini:gemini-embedding-001",
                    base_url=sim.gemini_base_url, dimensions=16, task_type="RETRIEVAL_DOCUMENT", mode="batch",
                    poll_interval=0.02, usage=True)
    np.testing.assert_allclose(llmframe.vectors(out["embedding"][:30]), expected(rows, 16), rtol=1e-6)
    assert out["embedding"].isna().tolist() == [False] * 30 + [True], "the empty row fails alone, unsent"
    assert [(c.vendor, c.requests) for c in sim.batches.created] == [("gemini", 30)] and sim.count == 0
    (made,) = sim.batches.created
    lines = sim.batches.requests(made.id)
    assert all(line["outputDimensionality"] == 16 and line["taskType"] == "RETRIEVAL_DOCUMENT" for line in lines)
    assert sorted(line["content"]["parts"][0]["text"] for line in lines) == sorted(rows)
    assert out["embedding_input_tokens"][:30].gt(0).all() and out.attrs["llmframe"]["cost"] is not None
    again = embed(pd.DataFrame({"t": rows}), "{t}", model="gemini:gemini-embedding-001", base_url=sim.gemini_base_url,
                  dimensions=16, task_type="RETRIEVAL_DOCUMENT")
    assert again.attrs["llmframe"]["cached"] == 30 and sim.count == 0, "the batch's vectors serve an online re-run"


def test_gemini_batch_embedding_lines_that_fail_are_sent_online_with_retry_online(sim, embed):
    sim.batches.settings = BatchSettings(seconds=0.05, error_rate=0.3)
    rows = texts(40, seed=6)
    out = embed(pd.Series(rows), model="gemini:gemini-embedding-001", base_url=sim.gemini_base_url, dimensions=8,
                mode="batch", poll_interval=0.02, retry_online=True)
    np.testing.assert_allclose(llmframe.vectors(out), expected(rows, 8), rtol=1e-6)
    assert sim.count > 0 and sim.batches.created[0].vendor == "gemini"
