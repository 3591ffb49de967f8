"""Images and documents in templates: every value kind, every route, content keys, bad input, cost, the simulator."""

from __future__ import annotations

import base64
import http.server
import os
import io
import random
import threading
from pathlib import Path

import anthropic
import openai
import pandas as pd
import pytest
from PIL import Image

import llmframe
from llmframe.errors import ConfigError, TemplateError
from llmframe.plan import media as plan_media
from llmframe.testing import media_answer

URLS = {"openai": "base_url", "anthropic": "anthropic_base_url", "gemini": "gemini_base_url"}
PROVIDERS = list(URLS)


def png(color: str, size: tuple[int, int] = (40, 30), form: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=form)
    return out.getvalue()


def pdf(text: str, pages: int = 1) -> bytes:
    """A real PDF of so many pages, made by Pillow."""
    out = io.BytesIO()
    first, *rest = [Image.new("RGB", (200, 100), "white") for _ in range(pages)]
    first.save(out, format="PDF", save_all=True, append_images=rest, title=text)
    return out.getvalue()


def run(sim, provider: str, frame: pd.DataFrame, template, **kwargs):
    kwargs.setdefault("model", f"{provider}:sim-model")
    return frame.llm.generate(template, base_url=getattr(sim, URLS[provider]), api_key=sim.api_key,
                              progress=False, **kwargs)


COLORS = ["red", "blue", "green", "white"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_row_i_gets_image_i_answer_on_every_route(sim, provider, tmp_path):
    images = [png(c) for c in COLORS]
    paths = []
    for i, data in enumerate(images):
        paths.append(tmp_path / f"img{i}.bin")  # the name says nothing: the type is sniffed from the bytes
        paths[-1].write_bytes(data)
    frame = pd.DataFrame({
        "name": ["a", "b", "c", "d"],
        "raw": images,  # bytes
        "where": [str(paths[0]), paths[1], str(paths[2]), paths[3]],  # str and Path
        "pil": [Image.open(io.BytesIO(d)) for d in images],
        "url": ["data:image/png;base64," + base64.b64encode(d).decode() for d in images],
    })
    expected = [media_answer(f"Describe {n}", d) for n, d in zip(frame["name"], images)]
    for column in ("raw", "where", "url"):
        out = run(sim, provider, frame, ["Describe {name}", llmframe.image(column)], output="answer")
        assert list(out["answer"]) == expected, column
    # A PIL image is sent as PNG: its answer follows those bytes.
    out = run(sim, provider, frame, ["Describe {name}", llmframe.image("pil")], output="answer")
    sent = [plan_media_png(p) for p in frame["pil"]]
    assert list(out["answer"]) == [media_answer(f"Describe {n}", d) for n, d in zip(frame["name"], sent)]


def plan_media_png(picture) -> bytes:
    from llmframe.providers.media import _encode_pil

    return _encode_pil(picture, None)[0]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_documents_several_media_and_list_columns(sim, provider):
    docs = [pdf("invoice 1"), pdf("invoice 2", pages=2)]
    photos = [[png("red"), png("blue")], [png("green")]]
    frame = pd.DataFrame({"vendor": ["Acme", "Globex"], "scan": docs, "photos": photos})
    template = ["Fields of the invoice from {vendor}", llmframe.document("scan"), llmframe.image("photos")]
    out = run(sim, provider, frame, template)
    assert list(out["response"]) == [media_answer(f"Fields of the invoice from {v}", d, *p)
                                     for v, d, p in zip(frame["vendor"], docs, photos)]
    # A chat template whose user content is a list of parts; text after the media is kept in order.
    chat = [{"role": "system", "content": "You read invoices."},
            {"role": "user", "content": [llmframe.document("scan"), "Total of {vendor}?"]}]
    out = run(sim, provider, frame, chat)
    assert list(out["response"]) == [media_answer(f"Total of {v}?", d) for v, d in zip(frame["vendor"], docs)]
    system = sim.requests[-1].chat["messages"][0]
    assert system == {"role": "system", "content": "You read invoices."}


def test_openai_parts_as_sent(sim):
    frame = pd.DataFrame({"img": [png("red")], "doc": [pdf("x")], "link": ["https://example.com/a.png"]})
    run(sim, "openai", frame, ["Look", llmframe.image("img", detail="low"), llmframe.document("doc"),
                               llmframe.image("link")], cache=False)
    parts = sim.requests[-1].body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "Look"}
    assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["detail"] == "low"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["type"] == "file" and parts[2]["file"]["file_data"].startswith("data:application/pdf;base64,")
    assert parts[3] == {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}  # by reference


def test_anthropic_blocks_as_sent(sim):
    frame = pd.DataFrame({"img": [png("red", form="JPEG")], "doc": ["https://example.com/r.pdf"]})
    out = run(sim, "anthropic", frame, ["Look", llmframe.image("img"), llmframe.document("doc")], cache=False)
    assert out["response_error"].isna().all()
    blocks = sim.requests[-1].body["messages"][0]["content"]
    assert blocks[1]["type"] == "image" and blocks[1]["source"]["media_type"] == "image/jpeg"
    assert blocks[2] == {"type": "document", "source": {"type": "url", "url": "https://example.com/r.pdf"}}


def test_the_key_is_the_content_not_the_path(sim, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png("red"))
    b.write_bytes(png("red"))
    template = ["What is this?", llmframe.image("path")]
    run(sim, "openai", pd.DataFrame({"path": [str(a)]}), template)
    assert sim.count == 1
    out = run(sim, "openai", pd.DataFrame({"path": [str(b)]}), template, usage=True)  # the same image, renamed
    assert sim.count == 1 and bool(out["response_cached"].iloc[0])
    a.write_bytes(png("blue"))  # changed in place: a miss
    out = run(sim, "openai", pd.DataFrame({"path": [str(a)]}), template, output="answer")
    assert sim.count == 2 and out["answer"].iloc[0] == media_answer("What is this?", png("blue"))
    # detail= and max_image_side= change what is sent, so they are in the key too.
    run(sim, "openai", pd.DataFrame({"path": [str(b)]}), ["What is this?", llmframe.image("path", detail="high")])
    run(sim, "openai", pd.DataFrame({"path": [str(b)]}), template, max_image_side=8)
    assert sim.count == 4


def test_a_cached_rerun_stats_files_instead_of_hashing_them(sim, tmp_path, monkeypatch):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png(COLORS[i % 4], (10 + i, 10)))
    frame = pd.DataFrame({"p": [str(p) for p in paths]})
    hashed = []
    real = plan_media._hash_file
    monkeypatch.setattr(plan_media, "_hash_file", lambda path: hashed.append(path) or real(path))
    run(sim, "openai", frame, ["?", llmframe.image("p")])
    first = len(hashed)
    assert first == 5
    run(sim, "openai", frame, ["?", llmframe.image("p")])
    assert len(hashed) == first and sim.count == 5


def test_requests_hold_references_not_bytes(sim, tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png("red", (300, 200)))
    from llmframe.faces.planning import plan
    from llmframe.faces.frames import rows_of

    frame = pd.DataFrame({"p": [str(path)] * 3, "n": [1, 2, 3]})
    built = plan(rows_of(frame), ["Row {n}", llmframe.image("p")], model="openai:sim-model",
                 base_url=sim.base_url, api_key=sim.api_key)
    request = built.work().build([0])[0]
    ref = request.messages[0]["content"][1]
    assert isinstance(ref, plan_media.MediaRef) and ref.source == str(path) and ref.origin == "path"
    assert not any(isinstance(v, bytes) for v in vars_of(ref))


def vars_of(ref) -> list:
    return [getattr(ref, name) for name in ref.__slots__]


def test_one_bad_file_is_its_rows_error_and_all_bad_stops_before_sending(sim, tmp_path):
    good = tmp_path / "ok.png"
    good.write_bytes(png("red"))
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    frame = pd.DataFrame({"p": [str(good), str(tmp_path / "missing.png"), str(text)]})
    out = run(sim, "openai", frame, ["?", llmframe.image("p")])
    assert out["response"].iloc[0] == media_answer("?", good.read_bytes())
    assert "cannot read" in out["response_error"].iloc[1] and "No such file" in out["response_error"].iloc[1]
    assert "not PNG, JPEG, WEBP, GIF or PDF" in out["response_error"].iloc[2]
    assert sim.count == 1
    with pytest.raises(TemplateError, match="no row's media could be used"):
        run(sim, "openai", frame.iloc[1:], ["?", llmframe.image("p")])
    assert sim.count == 1


def test_bad_templates_and_values_are_refused_before_sending(sim):
    frame = pd.DataFrame({"n": [1, 2], "img": [png("red"), png("blue")], "doc": [pdf("a"), pdf("b")]})
    with pytest.raises(TemplateError, match="holds a int at index 0"):
        run(sim, "openai", frame, ["?", llmframe.image("n")])
    with pytest.raises(TemplateError, match="does not have"):
        run(sim, "openai", frame, ["?", llmframe.image("photo")])
    with pytest.raises(TemplateError, match="user messages"):
        run(sim, "openai", frame, [{"role": "system", "content": ["?", llmframe.image("img")]},
                                   {"role": "user", "content": "{n}"}])
    with pytest.raises(ValueError, match="detail"):
        llmframe.image("img", detail="medium")
    with pytest.raises(TemplateError, match=r"application/pdf, not an image: use llmframe.document\(\)"):
        run(sim, "openai", frame, ["?", llmframe.image("doc")])  # a PDF is not an image
    assert sim.count == 0


def test_urls_the_provider_cannot_take_need_fetch_urls(sim):
    frame = pd.DataFrame({"u": ["https://example.com/a.png"]})
    with pytest.raises(ConfigError, match="fetch_urls=True"):
        run(sim, "gemini", frame, ["?", llmframe.image("u")])
    with pytest.raises(ConfigError, match="fetch_urls=True"):
        run(sim, "openai", frame, ["?", llmframe.document("u")])  # OpenAI takes PDFs as file data only
    assert sim.count == 0


def test_too_large_for_the_provider_without_downscaling(sim, monkeypatch):
    from llmframe.providers.anthropic import AnthropicProvider

    big = png("red", (400, 300))
    monkeypatch.setattr(AnthropicProvider, "media_max_bytes", {"image": len(big) - 1, "document": 10**9})
    frame = pd.DataFrame({"img": [big]})
    with pytest.raises(ConfigError, match="max_image_side"):
        run(sim, "anthropic", frame, ["?", llmframe.image("img")])
    out = run(sim, "anthropic", frame, ["?", llmframe.image("img")], max_image_side=100)
    sent = base64.b64decode(sim.requests[-1].body["messages"][0]["content"][1]["source"]["data"])
    assert Image.open(io.BytesIO(sent)).size == (100, 75)
    assert out["response"].iloc[0] == media_answer("?", sent)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(tmp_path):
    handler = lambda *a, **k: _Files(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_urls_downloads_within_the_cap(sim, file_server, monkeypatch):
    folder, base = file_server
    (folder / "a.png").write_bytes(png("red"))
    (folder / "big.png").write_bytes(png("blue", (500, 500)))
    frame = pd.DataFrame({"u": [f"{base}/a.png", f"{base}/big.png", f"{base}/gone.png"]})
    from llmframe import constants

    monkeypatch.setattr(constants, "FETCH_URL_MAX_BYTES", len(png("red")) + 10)
    out = run(sim, "gemini", frame, ["?", llmframe.image("u")], fetch_urls=True, max_attempts=1)
    assert out["response"].iloc[0] == media_answer("?", png("red"))
    assert "more than fetch_urls takes" in out["response_error"].iloc[1]
    assert "HTTP 404" in out["response_error"].iloc[2]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_estimate_counts_media_tokens_as_the_simulator_bills_them(sim, provider):
    frame = pd.DataFrame({"img": [png("red", (1000, 600)), png("blue", (300, 200))], "n": ["a", "b"]})
    template = ["{n}", llmframe.image("img")]
    estimate = frame.llm.estimate(template, model=f"{provider}:sim-model", base_url=getattr(sim, URLS[provider]),
                                  api_key=sim.api_key)
    out = run(sim, provider, frame, template, usage=True)
    billed = int(out["response_input_tokens"].sum())
    assert billed > 100  # the images, not the two characters of text
    assert abs(estimate.input_tokens - billed) <= 4  # the text is estimated (characters / 4), the media exactly


def test_max_cost_reserves_media_tokens(sim):
    frame = pd.DataFrame({"img": [png(c, (2000, 2000)) for c in COLORS], "n": list("abcd")})
    prices = {"openai:sim-model": {"input_mtok": 1_000_000.0, "output_mtok": 0.0}}  # a dollar a token
    from llmframe.errors import BudgetExceeded

    with pytest.raises(BudgetExceeded):  # each request's ~765 image tokens cost $765: two fit in 2,000
        run(sim, "openai", frame, ["{n}", llmframe.image("img")], prices=prices, max_cost=2000, max_concurrency=1)
    assert sim.count <= 2


def test_simulator_refuses_malformed_media_as_the_apis_do(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key=sim.api_key, max_retries=0)

    def send(part):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [part]}])

    with pytest.raises(openai.BadRequestError, match="unsupported image"):
        send({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}})
    with pytest.raises(openai.BadRequestError, match="formats"):
        send({"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"hello").decode()}})
    with pytest.raises(openai.BadRequestError, match="detail|Supported values"):
        send({"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "ultra"}})
    with pytest.raises(openai.BadRequestError, match="PDF|application/pdf"):
        send({"type": "file", "file": {"file_data": "data:application/pdf;base64," + base64.b64encode(png("red")).decode()}})
    claude = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key=sim.api_key, max_retries=0)
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": base64.b64encode(png("red")).decode()}}
    with pytest.raises(anthropic.BadRequestError, match="does not match the provided media type"):
        claude.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": [block]}])
    block["source"]["media_type"] = "image/tiff"
    with pytest.raises(anthropic.BadRequestError, match="media_type"):
        claude.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": [block]}])


def test_gemini_refuses_a_request_past_its_inline_limit(sim, monkeypatch):
    from llmframe.testing import media as sim_media

    monkeypatch.setattr(sim_media, "GEMINI_REQUEST_BYTES", 5000)
    noisy = Image.frombytes("RGB", (100, 100), random.Random(0).randbytes(30_000))  # incompressible
    data = io.BytesIO()
    noisy.save(data, format="PNG")
    assert len(data.getvalue()) > 5000
    frame = pd.DataFrame({"img": [data.getvalue(), png("red")]})
    out = run(sim, "gemini", frame, ["?", llmframe.image("img")], max_attempts=1)
    assert "payload size exceeds the limit" in out["response_error"].iloc[0]
    assert pd.isna(out["response_error"].iloc[1])


def test_structured_outputs_with_media(sim):
    from pydantic import BaseModel

    class Invoice(BaseModel):
        vendor: str
        total: float

    frame = pd.DataFrame({"scan": [pdf("a"), pdf("b")]})
    out = run(sim, "openai", frame, ["Extract the invoice", llmframe.document("scan")], output=Invoice)
    assert out["invoice_error"].isna().all() and out["vendor"].notna().all()
    # JSON mode: the schema goes in the prompt, as a text part after the media (the simulator's JSON-mode
    # answer does not follow the schema, so only the request is checked here).
    run(sim, "openai", frame, ["Extract the invoice", llmframe.document("scan")], output=Invoice,
        structured="json_object", max_attempts=1, invalid_retries=0)
    last = sim.requests[-1].body["messages"][0]["content"]
    assert last[-1]["type"] == "text" and "JSON Schema" in last[-1]["text"]  # the schema after the media


def test_polars_frames_take_binary_columns(sim):
    pl = pytest.importorskip("polars")
    images = [png("red"), png("blue")]
    frame = pl.DataFrame({"n": ["a", "b"], "img": images})
    out = frame.llm.generate(["{n}", llmframe.image("img")], model="openai:sim-model", base_url=sim.base_url,
                             api_key=sim.api_key, progress=False)
    assert out["response"].to_list() == [media_answer(n, d) for n, d in zip(["a", "b"], images)]


def test_a_file_changed_after_planning_fails_its_row(sim, tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png("red"))
    from llmframe.providers import media as provider_media
    import asyncio

    ref = plan_media.reference(str(path), "image")
    path.write_bytes(b"GIF89a" + b"\0" * 20)  # another type under the same name
    from llmframe.errors import ProviderError

    with pytest.raises(ProviderError, match="changed after the run was planned"):
        asyncio.run(provider_media.load(ref))
    assert Path(path).exists()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_mode_sends_media_in_the_batch_file(sim, provider, tmp_path, monkeypatch):
    from llmframe.testing.batches import BatchSettings

    sim.batches.settings = BatchSettings(seconds=0.1)
    images = [png(c) for c in COLORS]
    paths = []
    for i, data in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Path(paths[-1]).write_bytes(data)
    frame = pd.DataFrame({"n": list("abcd"), "p": paths, "doc": [pdf(c) for c in COLORS]})
    # Each job carries at most about two rows' bytes: the run splits the requests into several jobs by size.
    one_line = len(base64.b64encode(images[0] + frame["doc"][0])) + 600
    from llmframe.providers import provider_class

    monkeypatch.setattr(provider_class(provider), "batch_limits", (1000, 2 * one_line))
    out = run(sim, provider, frame, ["Row {n}", llmframe.image("p"), llmframe.document("doc")], mode="batch",
              poll_interval=0.02)
    assert list(out["response"]) == [media_answer(f"Row {n}", d, doc) for n, d, doc in
                                     zip(frame["n"], images, frame["doc"])]
    assert len(sim.batches.created) >= 2 and sim.count == 0


def test_the_keys_spelling_is_the_canonical_json_of_the_parts():
    from llmframe.plan.media_template import _content_json
    from llmframe.plan.request import canonical_json

    data = png("red")
    for ref in (plan_media.reference(data, "image"), plan_media.reference(data, "image", detail="low", max_side=5),
                plan_media.reference("https://x/y.png", "image", fetch=True), plan_media.reference(pdf("a"), "document")):
        parts = [{"type": "text", "text": 'h\u00e9llo "x"\n'}, ref]
        assert _content_json(parts) == canonical_json([p if isinstance(p, dict) else p.key() for p in parts])


def test_gemini_sends_media_past_its_inline_limit_through_the_files_api(sim, monkeypatch):
    from llmframe import constants

    monkeypatch.setattr(constants, "GEMINI_INLINE_MAX_BYTES", 1000)
    big = Image.frombytes("RGB", (40, 40), random.Random(1).randbytes(4800))
    data = io.BytesIO()
    big.save(data, format="PNG")
    big = data.getvalue()
    assert len(big) > 1000
    stored = []
    real = sim.batches.store_file
    monkeypatch.setattr(sim.batches, "store_file", lambda *a: stored.append(a[0]) or real(*a))
    frame = pd.DataFrame({"n": ["a", "b", "c"], "img": [big, big, png("red")]})
    out = run(sim, "gemini", frame, ["{n}", llmframe.image("img")])
    assert list(out["response"]) == [media_answer(n, d) for n, d in zip(frame["n"], frame["img"])]
    assert len(stored) == 1  # the big image, uploaded once for its two rows; the small one went inline
    parts = [r.body["contents"][0]["parts"][1] for r in sim.requests]
    assert sum("fileData" in p or "file_data" in p for p in parts) == 2
    assert sim.batches.files() == []  # deleted after the run


def test_a_series_of_images_with_image_of_no_column(sim):
    images = pd.Series([png("red"), png("blue")], name="photo")
    out = images.llm.generate(["What is this?", llmframe.image()], model="openai:sim-model", base_url=sim.base_url,
                              api_key=sim.api_key, progress=False)
    assert list(out) == [media_answer("What is this?", d) for d in images]
    with pytest.raises(TemplateError, match="name the column"):
        run(sim, "openai", images.to_frame(), ["?", llmframe.image()])


@pytest.mark.parametrize("mode", ["online", "batch"])
def test_a_file_gone_after_planning_fails_its_row_only(sim, tmp_path, monkeypatch, mode):
    from llmframe.plan.media_template import MediaPrompts
    from llmframe.testing.batches import BatchSettings

    sim.batches.settings = BatchSettings(seconds=0.1)
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        path.write_bytes(png(COLORS[i]))
    planned = MediaPrompts.settled

    def settled_then_deleted(self):  # the file disappears between planning and sending, for real
        planned(self)
        paths[1].unlink()

    monkeypatch.setattr(MediaPrompts, "settled", settled_then_deleted)
    frame = pd.DataFrame({"p": [str(p) for p in paths]})
    out = run(sim, "openai", frame, ["?", llmframe.image("p")], mode=mode, poll_interval=0.02, max_attempts=1)
    assert out["response"].iloc[0] == media_answer("?", png(COLORS[0]))
    assert out["response"].iloc[2] == media_answer("?", png(COLORS[2]))
    assert "cannot read" in out["response_error"].iloc[1]


def test_a_rerun_in_a_new_process_reads_digests_from_the_cache_directory(sim, tmp_path, cache_dir, monkeypatch):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png(COLORS[i]))
    frame = pd.DataFrame({"p": [str(p) for p in paths]})
    run(sim, "openai", frame, ["?", llmframe.image("p")])
    assert (cache_dir / "media-digests.sqlite").exists()
    hashed = []
    real = plan_media._hash_file
    monkeypatch.setattr(plan_media, "_hash_file", lambda path: hashed.append(path) or real(path))
    monkeypatch.setattr(plan_media.DIGESTS, "_seen", type(plan_media.DIGESTS._seen)())  # as a new process has
    paths[3].write_bytes(png("black"))  # one file changed since: hashed again, a miss
    out = run(sim, "openai", frame, ["?", llmframe.image("p")], usage=True)
    assert hashed == [str(paths[3])]
    assert list(out["response_cached"]) == [True, True, True, False]
    # cache=False writes nothing to the cache directory, digests included
    other = tmp_path / "elsewhere"
    run(sim, "openai", frame, ["?", llmframe.image("p")], cache=False, cache_dir=str(other))
    assert not other.exists()


def test_llmframe_run_sends_an_image_column_of_a_parquet_file(sim, tmp_path):
    import subprocess
    import sys

    images = [png("red"), png("blue")]
    pd.DataFrame({"sku": ["A", "B"], "photo": images}).to_parquet(tmp_path / "in.parquet")
    env = {**os.environ, "OPENAI_API_KEY": sim.api_key, "OPENAI_BASE_URL": sim.base_url,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "llmframe", "run", str(tmp_path / "in.parquet"),
                           str(tmp_path / "out.parquet"), "-t", "Product {sku}", "--image", "photo", "-m",
                           "openai:sim-model", "--max-image-side", "16", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "out.parquet")
    sent = {r.body["messages"][0]["content"][0]["text"]:
            base64.b64decode(r.body["messages"][0]["content"][1]["image_url"]["url"].split(",")[1]) for r in sim.requests}
    assert all(Image.open(io.BytesIO(d)).size == (16, 12) for d in sent.values())  # 40 x 30, downscaled
    assert list(out["response"]) == [media_answer(f"Product {s}", sent[f"Product {s}"]) for s in ["A", "B"]]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_media_and_tools_in_one_run(sim, provider):
    import json

    from llmframe.testing import ToolMode

    sim.tool_mode = ToolMode("lookup")

    def lookup(name: str) -> dict:
        """Look a customer up by name."""
        return {"name": name}

    frame = pd.DataFrame({"customer": ["anna", "bob"], "img": [png("red"), png("blue")]})
    out = run(sim, provider, frame, ["{customer}", llmframe.image("img")], tools=[lookup])
    assert out["response_error"].isna().all()
    assert list(out["response"]) == ["lookup: " + json.dumps({"name": n}, separators=(",", ":"))
                                     for n in frame["customer"]]
    assert all(any(isinstance(p, dict) and p.get("type") == "media" for p in r.chat["messages"][0]["content"])
               for r in sim.requests)  # every turn sends the row's image again
