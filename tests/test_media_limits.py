"""Media tokens where limits are kept: the rate limiter's token reservation and max_prompt_tokens=."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from PIL import Image

import llmframe
from llmframe.cost import media as cost_media
from llmframe.engine import ratelimit
from llmframe.plan import media as plan_media
from llmframe.testing import media_answer

URLS = {"openai": "base_url", "anthropic": "anthropic_base_url", "gemini": "gemini_base_url"}


def png(color: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def pdf(pages: int) -> bytes:
    out = io.BytesIO()
    first, *rest = [Image.new("RGB", (200, 100), "white") for _ in range(pages)]
    first.save(out, format="PDF", save_all=True, append_images=rest)
    return out.getvalue()


@pytest.fixture
def reserved(monkeypatch):
    """The tokens each limiter reservation asked for (the real Limiter, its acquire recorded)."""
    seen: list[float] = []
    real = ratelimit.Limiter.acquire

    async def acquire(self, tokens, patience=None):
        seen.append(tokens)
        return await real(self, tokens, patience)

    monkeypatch.setattr(ratelimit.Limiter, "acquire", acquire)
    return seen


@pytest.mark.parametrize("provider", list(URLS))
def test_the_limiter_reserves_each_requests_media_tokens(sim, provider, reserved):
    images = [png("red", (2000, 1500)), png("blue", (40, 30))]
    frame = pd.DataFrame({"img": images, "doc": [pdf(3), pdf(1)], "n": ["abcd", "efgh"]})
    out = frame.llm.generate(["{n}", llmframe.image("img"), llmframe.document("doc")], model=f"{provider}:sim-model",
                             base_url=getattr(sim, URLS[provider]), api_key=sim.api_key, progress=False,
                             max_tokens=50, tpm=10_000_000, max_concurrency=1, usage=True,
                             prices={f"{provider}:sim-model": {"input_mtok": 1.0, "output_mtok": 1.0}})
    assert list(out["response"]) == [media_answer(n, i, d) for n, i, d in zip(frame["n"], images, frame["doc"])]
    expected = [1 + cost_media.image_tokens(provider, *size) + cost_media.document_tokens(provider, pages) + 50
                for size, pages in (((2000, 1500), 3), ((40, 30), 1))]
    assert reserved == expected
    # Not the old count (the number of parts in each list, a handful of tokens): the big image and three pages
    # are thousands of tokens, close to what the simulator billed.
    assert reserved[0] > 1000
    billed = list(out["response_input_tokens"])
    assert all(abs(r - 50 - b) <= 4 for r, b in zip(reserved, billed))


def test_a_tokens_per_minute_limit_paces_requests_by_their_media(sim, reserved, monkeypatch):
    """tpm= counts the images: at one image's tokens a second (a bucket holds a second's worth), three requests
    sent at once wait about 0, 1 and 2 seconds; counted as text they would be a few tokens each and not wait."""
    frame = pd.DataFrame({"img": [png(c, (2000, 1500)) for c in ("red", "blue", "green")]})
    waits: list[float] = []
    real = ratelimit.Bucket.reserve
    monkeypatch.setattr(ratelimit.Bucket, "reserve", lambda self, amount: waits.append(real(self, amount)) or waits[-1])
    one = 1 + cost_media.image_tokens("openai", 2000, 1500) + 1
    out = frame.llm.generate(["?", llmframe.image("img")], model="openai:sim-model", base_url=sim.base_url,
                             api_key=sim.api_key, progress=False, max_tokens=1, tpm=one * 60, max_concurrency=3)
    assert out["response"].notna().all()
    assert reserved == [one] * 3 and one > 700
    assert max(waits) > 0.5  # the third waited for the bucket to refill


def test_max_prompt_tokens_counts_media_tokens(sim):
    big, small = png("red", (2000, 2000)), png("blue", (40, 30))
    frame = pd.DataFrame({"img": [big, small], "n": ["a", "b"]})
    assert cost_media.image_tokens("openai", 2000, 2000) == 765 and cost_media.image_tokens("openai", 40, 30) == 255
    out = frame.llm.generate(["{n}", llmframe.image("img")], model="openai:sim-model", base_url=sim.base_url,
                             api_key=sim.api_key, progress=False, max_prompt_tokens=500)
    assert pd.isna(out["response"].iloc[0]) and out["response"].iloc[1] == media_answer("b", small)
    assert "prompt too long: about 766 tokens > max_prompt_tokens=500" in out["response_error"].iloc[0]
    assert sim.count == 1  # the big image was never sent
    # Anthropic counts the same image otherwise (1568 pixels a side at most: 3,279 tokens): also too long.
    out = frame.llm.generate(["{n}", llmframe.image("img")], model="anthropic:sim-model",
                             base_url=sim.anthropic_base_url, api_key=sim.api_key, progress=False,
                             max_prompt_tokens=3000)
    assert "about 3280 tokens" in out["response_error"].iloc[0] and pd.notna(out["response"].iloc[1])


def test_max_prompt_tokens_counts_pdf_pages():
    ref = plan_media.reference(pdf(4), "document")
    messages = [{"role": "user", "content": [{"type": "text", "text": "abcdefgh"}, ref]}]
    assert cost_media.prompt_tokens("gemini", messages) == 2 + 4 * cost_media.GEMINI_PAGE_TOKENS
    assert cost_media.prompt_tokens("anthropic", messages) == 2 + 4 * cost_media.ANTHROPIC_PAGE_TOKENS
