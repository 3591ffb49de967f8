"""model="transformers:<path>" in df.llm.embed: real forward passes of a tiny random encoder built offline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import llmframe
from llmframe.errors import ConfigError

torch = pytest.importorskip("torch", reason="needs the transformers extra: pip install 'llmframe[transformers]'")
transformers = pytest.importorskip("transformers")

from llmframe.testing.tiny_model import build_tiny_encoder  # noqa: E402

TEXTS = ["the quick brown fox", "a review: the film was wonderful", "0 1 2", "cold food and a long wait " * 3]


@pytest.fixture
def encoder(llm_tiny_encoder, cache_dir):
    llmframe.unload()
    yield f"transformers:{llm_tiny_encoder}"
    llmframe.unload()


def by_hand(path, texts, mode="mean", normalize=False, max_length=None):
    """The reference: AutoModel one text at a time (no padding), pooled by hand."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    net = transformers.AutoModel.from_pretrained(path)
    out = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt", truncation=max_length is not None, max_length=max_length)
        with torch.inference_mode():
            states = net(**ids).last_hidden_state[0]
        vector = states[0] if mode == "cls" else states.mean(dim=0)
        out.append(torch.nn.functional.normalize(vector, dim=0) if normalize else vector)
    return torch.stack(out).numpy()


def test_mean_pooled_vectors_equal_a_hand_written_forward_pass(encoder, llm_tiny_encoder):
    out = pd.DataFrame({"t": TEXTS}).llm.embed("{t}", model=encoder, progress=False, usage=True)
    matrix = llmframe.vectors(out["embedding"])
    assert matrix.shape == (4, 32) and out["embedding_error"].isna().all()
    np.testing.assert_allclose(matrix, by_hand(llm_tiny_encoder, TEXTS), rtol=1e-4, atol=1e-5)
    assert out["embedding_input_tokens"].sum() > 0
    again = pd.DataFrame({"t": TEXTS}).llm.embed("{t}", model=encoder, progress=False)
    assert again.attrs["llmframe"]["cached"] == 4
    np.testing.assert_array_equal(llmframe.vectors(again["embedding"]), matrix)


def test_the_models_sentence_transformers_pooling_config_is_used(tmp_path, cache_dir):
    path = build_tiny_encoder(tmp_path / "cls", pooling="cls")
    out = pd.Series(TEXTS).llm.embed(model=f"transformers:{path}", progress=False)
    matrix = llmframe.vectors(out)
    np.testing.assert_allclose(matrix, by_hand(path, TEXTS, "cls", normalize=True), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1, rtol=1e-5)  # its Normalize module
    llmframe.unload()


def test_an_input_over_the_models_limit_fails_alone_unless_truncated(encoder, llm_tiny_encoder):
    rows = [*TEXTS, "fox " * 400]  # over the encoder's 128 positions
    out = pd.DataFrame({"t": rows}).llm.embed("{t}", model=encoder, progress=False)
    assert out["embedding"].isna().tolist() == [False] * 4 + [True]
    assert "truncate=True" in out.loc[4, "embedding_error"]
    cut = pd.DataFrame({"t": rows}).llm.embed("{t}", model=encoder, progress=False, truncate=True)
    np.testing.assert_allclose(llmframe.vectors(cut["embedding"])[4], by_hand(llm_tiny_encoder, rows[4:],
                                                                               max_length=128)[0], rtol=1e-4,
                               atol=1e-5)


def test_dimensions_must_be_the_models_own(encoder):
    with pytest.raises(ConfigError, match="vectors of 32 numbers"):
        pd.Series(TEXTS).llm.embed(model=encoder, dimensions=16)
    assert llmframe.vectors(pd.Series(TEXTS).llm.embed(model=encoder, dimensions=32, progress=False)).shape == (4, 32)
