"""The semantic operators on a local model (the tiny offline transformers model): decoding is constrained to the
operator's schema, so a random model still answers only booleans and labels of the set."""

from __future__ import annotations

import pandas as pd
import pytest

import llmframe

pytest.importorskip("torch", reason="needs the transformers extra: pip install 'llmframe[transformers]'")
pytest.importorskip("transformers")


@pytest.fixture
def model(llm_tiny_model):
    llmframe.unload()
    yield f"transformers:{llm_tiny_model}"
    llmframe.unload()


def test_local_classify_and_filter_answer_only_within_the_schema(model):
    df = pd.DataFrame({"text": [f"ticket {i}: " + "broken screen " * (i % 3) for i in range(6)]})
    labels = ["bug", "question", "other"]
    out = df.llm.classify("{text}", labels=labels, model=model, max_tokens=24, progress=False)
    assert out.llm.report["failed"] == 0 and set(out["label"]) <= set(labels)
    assert list(out["label"].cat.categories) == labels
    mask = df.llm.filter('Is it about a "broken" screen? {text}', model=model, mask=True, max_tokens=16,
                         progress=False)
    assert mask.notna().all() and str(mask.dtype) == "boolean"
