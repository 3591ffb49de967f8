"""Images and PDFs through OpenAI's Responses API (api="responses"): input_image and input_file parts, online on
both transports and in batch mode, through the real openai SDK against the simulator's Responses protocol."""

from __future__ import annotations

import base64
import io

import openai
import pandas as pd
import pytest
from PIL import Image

import llmframe
from llmframe.testing import media_answer
from llmframe.testing.batches import BatchSettings

COLORS = ["red", "blue", "green"]


def png(color: str, size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def pdf(text: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(out, format="PDF", title=text)
    return out.getvalue()


def run(sim, frame, template, **kwargs):
    return frame.llm.generate(template, model="openai:sim-model", base_url=sim.base_url, api_key=sim.api_key,
                              progress=False, api="responses", **kwargs)


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_row_i_gets_image_i_and_document_i_answer(sim, transport):
    images, docs = [png(c) for c in COLORS], [pdf(c) for c in COLORS]
    frame = pd.DataFrame({"n": list("abc"), "img": images, "doc": docs})
    out = run(sim, frame, ["Row {n}", llmframe.image("img"), llmframe.document("doc")],
              provider_options={"transport": transport},
              usage=True, prices={"openai:sim-model": {"input_mtok": 1.0, "output_mtok": 1.0}})
    assert list(out["response"]) == [media_answer(f"Row {n}", i, d) for n, i, d in zip(frame["n"], images, docs)]
    assert all(r.path == "/v1/responses" for r in sim.requests)
    assert (out["response_input_tokens"] > 1000).all()  # the image and the page, billed as the chat route bills them


def test_parts_as_sent(sim):
    frame = pd.DataFrame({"img": [png("red")], "doc": [pdf("x")], "link": ["https://example.com/a.png"]})
    out = run(sim, frame, [{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": ["Look", llmframe.image("img", detail="low"),
                                                        llmframe.document("doc"), llmframe.image("link")]}])
    assert out["response_error"].isna().all()
    body = sim.requests[-1].body
    assert body["instructions"] == "Be brief." and "messages" not in body
    parts = body["input"][0]["content"]
    assert parts[0] == {"type": "input_text", "text": "Look"}
    assert parts[1]["type"] == "input_image" and parts[1]["detail"] == "low"
    assert parts[1]["image_url"].startswith("data:image/png;base64,")
    assert parts[2]["type"] == "input_file" and parts[2]["file_data"].startswith("data:application/pdf;base64,")
    assert parts[2]["filename"].endswith(".pdf")
    assert parts[3] == {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}


def test_estimate_counts_media_as_the_responses_route_bills_them(sim):
    frame = pd.DataFrame({"img": [png("red", (1000, 600))], "n": ["a"]})
    template = ["{n}", llmframe.image("img")]
    estimate = frame.llm.estimate(template, model="openai:sim-model", base_url=sim.base_url, api_key=sim.api_key,
                                  api="responses")
    out = run(sim, frame, template, usage=True, prices={"openai:sim-model": {"input_mtok": 1.0, "output_mtok": 1.0}})
    assert abs(estimate.input_tokens - int(out["response_input_tokens"].sum())) <= 4


def test_batch_mode_sends_responses_media_in_the_batch_file(sim):
    sim.batches.settings = BatchSettings(seconds=0.1)
    images = [png(c) for c in COLORS]
    frame = pd.DataFrame({"n": list("abc"), "img": images})
    out = run(sim, frame, ["Row {n}", llmframe.image("img", detail="high")], mode="batch", poll_interval=0.02)
    assert list(out["response"]) == [media_answer(f"Row {n}", i) for n, i in zip(frame["n"], images)]
    assert sim.count == 0
    lines = sim.batches.requests(sim.batches.created[0].id)
    part = lines[0]["input"][0]["content"][1]  # each line's body
    assert part["type"] == "input_image" and part["detail"] == "high"


def test_a_bad_file_is_its_rows_error(sim, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png("red"))
    frame = pd.DataFrame({"p": [str(good), str(tmp_path / "missing.png")]})
    out = run(sim, frame, ["?", llmframe.image("p")])
    assert out["response"].iloc[0] == media_answer("?", png("red"))
    assert "cannot read" in out["response_error"].iloc[1]


def test_the_simulator_checks_responses_media_as_the_api_does(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)

    def send(part):
        return client.responses.create(model="m", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "?"}, part]}])

    data = "data:image/png;base64," + base64.b64encode(png("red")).decode()
    assert send({"type": "input_image", "image_url": data, "detail": "auto"}).output_text == \
        media_answer("?", png("red"))
    with pytest.raises(openai.BadRequestError, match="detail"):
        send({"type": "input_image", "image_url": data, "detail": "ultra"})
    with pytest.raises(openai.BadRequestError, match="unsupported image"):
        send({"type": "input_image", "image_url": "data:image/png;base64,@@@", "detail": "auto"})
    with pytest.raises(openai.BadRequestError, match="PDF|application/pdf"):
        send({"type": "input_file", "filename": "a.pdf", "file_data": data})
    with pytest.raises(openai.BadRequestError, match="Supported values"):
        send({"type": "image_url", "image_url": {"url": data}})  # chat's part, not the Responses API's
