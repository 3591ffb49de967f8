"""Images in df.llm.embed with Gemini's multimodal gemini-embedding-2, through google-genai against the simulator
(which embeds a picture as a word naming its bytes, beside the caption's words): online, cached, in batch mode."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

import llmframe
from llmframe.testing.batches import BatchSettings

from .test_embed import embed, embedding_requests  # noqa: F401  (the fixture)

Image = pytest.importorskip("PIL.Image", reason="needs Pillow: pip install 'llmframe[media]'")
MODEL = "gemini:gemini-embedding-2"


def png(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def photos() -> pd.DataFrame:
    return pd.DataFrame({"photo": [png("red"), png("blue"), png("red")], "title": ["boots", "boots", "jacket"]})


def test_images_embed_with_their_captions_and_a_rerun_is_cached(sim, embed, photos):
    out = embed(photos, ["{title}", llmframe.image("photo")], model=MODEL, base_url=sim.gemini_base_url,
                dimensions=32, usage=True)
    assert out["embedding_error"].isna().all()
    m = llmframe.vectors(out["embedding"])
    similar = m @ m.T
    assert similar[0, 1] > 0.3 and similar[0, 2] > 0.3, "the same caption, or the same picture: alike"
    assert similar[1, 2] < 0.2, "neither the picture nor the caption in common"
    (request,) = embedding_requests(sim)
    parts = [r["content"]["parts"] for r in request.body["requests"]]
    assert all(p[0] == {"text": t} and "inline_data" in p[1] for p, t in zip(parts, photos["title"]))
    assert (out["embedding_input_tokens"] > 258).all(), "a picture counts as a small image's tokens"
    again = embed(photos, ["{title}", llmframe.image("photo")], model=MODEL, base_url=sim.gemini_base_url,
                  dimensions=32)
    assert again.attrs["llmframe"]["cached"] == 3 and len(embedding_requests(sim)) == 1
    np.testing.assert_array_equal(llmframe.vectors(again["embedding"]), m)
    other = photos.assign(photo=[png("green")] * 3)
    changed = embed(other, ["{title}", llmframe.image("photo")], model=MODEL, base_url=sim.gemini_base_url,
                    dimensions=32)
    assert changed.attrs["llmframe"]["cached"] == 0, "another picture is another key"


def test_images_embed_in_gemini_batch_mode(sim, embed, photos):
    sim.batches.settings = BatchSettings(seconds=0.05)
    online = embed(photos, ["{title}", llmframe.image("photo")], model=MODEL, base_url=sim.gemini_base_url,
                   dimensions=16, cache=False)
    out = embed(photos, ["{title}", llmframe.image("photo")], model=MODEL, base_url=sim.gemini_base_url,
                dimensions=16, mode="batch", poll_interval=0.02)
    assert [(c.vendor, c.requests) for c in sim.batches.created] == [("gemini", 3)]
    np.testing.assert_allclose(llmframe.vectors(out["embedding"]), llmframe.vectors(online["embedding"]), rtol=1e-6)
