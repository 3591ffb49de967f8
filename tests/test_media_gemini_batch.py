"""Gemini batch mode with media past the inline limit: files uploaded before the job (once per distinct file),
named by URI in the batch's requests, deleted once the job has ended; through google-genai against the simulator."""

from __future__ import annotations

import asyncio
import io
import json
import random
import time

import pandas as pd
import pytest
from google import genai
from google.genai import types
from PIL import Image

import llmframe
from llmframe import constants
from llmframe.testing import media_answer
from llmframe.testing.batches import BatchSettings


def noise(seed: int, side: int = 40) -> bytes:
    """An incompressible PNG of side x side pixels (about 3 x side^2 bytes)."""
    picture = Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def pdf(text: str) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (60, 60), random.Random(text).randbytes(60 * 60 * 3)).save(out, format="PDF", title=text)
    return out.getvalue()


@pytest.fixture
def small_inline_limit(sim, monkeypatch):
    """Gemini's 20 MB inline limit brought down to 1,000 bytes, so test-sized media pass it; quick batches."""
    monkeypatch.setattr(constants, "GEMINI_INLINE_MAX_BYTES", 1000)
    sim.batches.settings = BatchSettings(seconds=0.2)
    uploads: list[dict] = []
    real = sim.batches.store_file
    monkeypatch.setattr(sim.batches, "store_file", lambda i, data, obj: uploads.append(obj) or real(i, data, obj))
    return uploads


def run(sim, frame, template, **kwargs):
    return frame.llm.generate(template, model="gemini:sim-model", base_url=sim.gemini_base_url, api_key=sim.api_key,
                              progress=False, mode="batch", poll_interval=0.05, **kwargs)


def file_parts(sim) -> list[list[str]]:
    """Per request of every batch created: how each media part went ("file" or "inline")."""
    out = []
    for created in sim.batches.created:
        for raw in sim.batches.requests(created.id):
            parts = raw["contents"][0]["parts"]
            out.append(["file" if "file_data" in p or "fileData" in p else "inline" for p in parts
                        if "text" not in p])
    return out


def test_media_past_the_inline_limit_are_uploaded_once_and_deleted_after_the_job(sim, small_inline_limit):
    big, other, small = noise(1), noise(2), Image.new("RGB", (8, 8), "red")
    data = io.BytesIO()
    small.save(data, format="PNG")
    small = data.getvalue()
    assert len(big) > 1000 and len(small) < 1000
    frame = pd.DataFrame({"n": ["a", "b", "c", "d"], "img": [big, big, small, other]})
    out = run(sim, frame, ["Row {n}", llmframe.image("img")])
    assert list(out["response"]) == [media_answer(f"Row {n}", d) for n, d in zip(frame["n"], frame["img"])]
    assert file_parts(sim) == [["file"], ["file"], ["inline"], ["file"]]
    media_files = [u for u in small_inline_limit if u["mimeType"] == "image/png"]
    assert len(media_files) == 2  # the big image once for its two rows, the other once
    uid = sim.batches.created[0].tag
    assert sorted(u["displayName"] for u in media_files) == sorted(
        f"{uid}/{llmframe.plan.media.digest_bytes(d)}" for d in (big, other))
    assert sim.batches.files() == []  # deleted once the batch had ended
    assert sim.count == 0  # nothing went online


def test_files_are_deleted_only_once_their_batch_has_ended(sim, small_inline_limit, monkeypatch):
    states = []
    real = sim.batches.delete_file

    def delete(file_id):
        states.append([sim.batches.state(c.id)[0] for c in sim.batches.created])
        return real(file_id)

    monkeypatch.setattr(sim.batches, "delete_file", delete)
    sim.batches.settings = BatchSettings(seconds=0.5)
    images = [noise(i) for i in range(3)]
    out = run(sim, pd.DataFrame({"img": images}), ["?", llmframe.image("img")])
    assert out["response"].notna().all()
    assert len(states) == 3 and all(s == ["completed"] for s in states)


def test_documents_and_downscaled_images_upload_the_bytes_sent(sim, small_inline_limit):
    doc = pdf("report")
    big = noise(5, side=60)
    frame = pd.DataFrame({"img": [big], "doc": [doc]})
    out = run(sim, frame, ["Both", llmframe.image("img"), llmframe.document("doc")], max_image_side=30)
    from llmframe.providers.media import downscale

    small, _mime = downscale(big, "image/png", 30)
    assert out["response"].iloc[0] == media_answer("Both", small, doc)
    assert sorted(u["mimeType"] for u in small_inline_limit) == ["application/pdf", "image/png"]
    assert file_parts(sim) == [["file", "file"]]
    assert sim.batches.files() == []


def test_file_references_keep_batch_lines_small(sim, small_inline_limit, monkeypatch):
    """Inline, each request would carry ~6.5 KB of base64 and a 5 KB job limit would need one job a request;
    as files they all fit one job."""
    from llmframe.providers.gemini import GeminiProvider

    monkeypatch.setattr(GeminiProvider, "batch_limits", (1000, 5000))
    images = [noise(10 + i, side=45) for i in range(4)]
    out = run(sim, pd.DataFrame({"img": images}), ["?", llmframe.image("img")])
    assert list(out["response"]) == [media_answer("?", d) for d in images]
    assert len(sim.batches.created) == 1 and sim.batches.files() == []


def test_a_job_collected_by_another_run_deletes_its_files_by_name(sim, small_inline_limit):
    """submit() uploads and creates; a later generate of the same call (a new adapter, as another process
    would be) re-attaches, collects, and finds the job's files by their names to delete them."""
    sim.batches.settings = BatchSettings(seconds=0.3)
    images = [noise(20), noise(21)]
    frame = pd.DataFrame({"img": images})
    kwargs = dict(model="gemini:sim-model", base_url=sim.gemini_base_url, api_key=sim.api_key, progress=False,
                  mode="batch", poll_interval=0.05)
    job = frame.llm.submit(["?", llmframe.image("img")], **kwargs)
    assert len(sim.batches.files()) == 2  # uploaded before the job; the job is running
    out = frame.llm.generate(["?", llmframe.image("img")], **kwargs)
    assert list(out["response"]) == [media_answer("?", d) for d in images]
    assert len(sim.batches.created) == 1  # re-attached, not sent again
    assert sim.batches.files() == []
    job.cancel()


def test_a_refused_batch_deletes_what_it_uploaded(sim, small_inline_limit):
    """A batch the server refuses (HTTP 400) was never created: its uploaded media go at once."""
    from llmframe.batch.gemini import GeminiBatches
    from llmframe.errors import ProviderError
    from llmframe.plan.media import reference
    from llmframe.providers.gemini import GeminiProvider

    async def scenario():
        provider = GeminiProvider("sim-model", base_url=sim.gemini_base_url, api_key=sim.api_key)
        adapter = GeminiBatches(provider)
        line = adapter.line_builder({})
        good = line("k1", [{"role": "user", "content": [{"type": "text", "text": "?"},
                                                        reference(noise(30), "image")]}])
        bad = json.dumps({"key": "k2", "request": {"contents": [{"role": "robot", "parts": [{"text": "?"}]}]}})  # the API refuses the batch
        with pytest.raises(ProviderError, match="400"):
            await adapter.create("lf-test-0", [good, bad])
        await adapter.aclose()

    asyncio.run(scenario())
    assert len(small_inline_limit) == 1 and sim.batches.files() == []


def test_the_simulator_fails_a_batch_request_whose_file_was_deleted_before_it_ran(sim):
    """As the API reads a batch's files when it runs: a file deleted too early fails the requests naming it."""
    sim.batches.settings = BatchSettings(seconds=0.2)
    client = genai.Client(api_key=sim.api_key, http_options=types.HttpOptions(base_url=sim.gemini_base_url))
    kept = client.files.upload(file=io.BytesIO(noise(40)), config=types.UploadFileConfig(mime_type="image/png"))
    gone = client.files.upload(file=io.BytesIO(noise(41)), config=types.UploadFileConfig(mime_type="image/png"))
    requests = [{"contents": [{"role": "user", "parts": [{"text": "?"}, {"file_data": {
        "file_uri": f.uri, "mime_type": "image/png"}}]}], "metadata": {"key": str(k)}} for k, f in enumerate((kept, gone))]
    job = client.batches.create(model="sim-model", src=requests)
    client.files.delete(name=gone.name)
    deadline = time.monotonic() + 60
    while (job := client.batches.get(name=job.name)).state.value != "JOB_STATE_SUCCEEDED":
        assert time.monotonic() < deadline, job.state
        time.sleep(0.02)
    answers = job.dest.inlined_responses
    assert answers[0].response is not None and answers[0].error is None
    assert answers[1].response is None and "does not exist" in answers[1].error.message
    assert [f.name for f in client.files.list()] == [kept.name]


def test_a_job_sent_as_a_jsonl_file_names_its_media_by_uri_and_deletes_both(sim, small_inline_limit, monkeypatch):
    monkeypatch.setattr(constants, "GEMINI_INLINE_BYTES", 10)  # every job's requests go as an uploaded JSONL file
    images = [noise(50), noise(51)]
    out = run(sim, pd.DataFrame({"img": images}), ["?", llmframe.image("img")])
    assert list(out["response"]) == [media_answer("?", d) for d in images]
    assert sorted(u["mimeType"] for u in small_inline_limit) == ["image/png", "image/png", "jsonl"]
    assert sim.batches.created[0].file and file_parts(sim) == [["file"], ["file"]]
    assert sim.batches.files() == []  # the media and the requests' file
