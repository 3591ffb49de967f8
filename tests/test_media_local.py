"""Images through a local image-text-to-text model: a tiny random Llava built offline, its processor and chat template."""

from __future__ import annotations

import io
import os

import pandas as pd
import pytest

import llmframe
from llmframe.errors import ConfigError

torch = pytest.importorskip("torch", reason="needs the transformers extra: pip install 'llmframe[transformers]'")
pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    from llmframe.testing.tiny_model import build_tiny_vlm

    os.environ["HF_HUB_OFFLINE"] = "1"  # never a hub: the model is built here
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


def png(color: str, size=(48, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def by_hand(path, text: str, picture: bytes, max_new_tokens: int) -> str:
    """The same prompt through transformers directly: the processor's chat template, its image processor, generate."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[prompt], images=[[Image.open(io.BytesIO(picture)).convert("RGB")]], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_a_local_vision_model_answers_each_row_from_its_image(vlm):
    images = [png("red"), png("blue"), png("green")]
    frame = pd.DataFrame({"n": ["a", "b", "c"], "img": images})
    out = frame.llm.generate(["Describe {n}", llmframe.image("img")], model=f"transformers:{vlm}", max_tokens=6,
                             progress=False, usage=True, provider_options={"batch_size": 2})
    assert out["response_error"].str.contains("max_tokens").all()  # a random model never stops: cut at 6 tokens
    assert list(out["response"]) == [by_hand(vlm, f"Describe {n}", d, 6) for n, d in zip(frame["n"], images)]
    assert (out["response_input_tokens"] > 16).all()  # the image's 16 patch tokens are counted
    again = frame.llm.generate(["Describe {n}", llmframe.image("img")], model=f"transformers:{vlm}", max_tokens=6,
                               progress=False, usage=True)
    assert list(again["response"]) == list(out["response"])
    llmframe.unload()


def test_local_models_refuse_what_they_cannot_take(vlm):
    frame = pd.DataFrame({"doc": [b"%PDF-1.4 x"]})
    with pytest.raises(ConfigError, match="only images"):
        frame.llm.generate(["Read", llmframe.document("doc")], model=f"transformers:{vlm}", progress=False)
