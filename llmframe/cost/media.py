"""The input tokens of images and documents, by each provider's documented rules, for estimate and max_cost.

OpenAI (GPT-4o and later, vision docs "Calculating costs"): detail "low" is 85 tokens; otherwise the image is
fit within 2048 x 2048, then its shorter side scaled to 768, and each 512-pixel tile costs 170 tokens, plus 85.
Anthropic (vision docs): an image fit within 1568 pixels on its longer side costs width x height / 750 tokens.
Gemini (token docs): an image with both sides at most 384 pixels is 258 tokens, a larger one 258 per 768 x 768
tile. PDFs: Gemini bills 258 tokens a page; Anthropic 1,500 to 3,000 a page (its text and its image: the upper
end is counted); OpenAI sends each page's text and an image of it (counted as one high-detail page image).
"""

from __future__ import annotations

import io
import math
import re

from .. import constants
from ..plan.media import IMAGE, MediaRef

_UNKNOWN_SIDE = 1024  # a URL passed on unread: its size is unknown, so a 1024 x 1024 image is counted
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")  # a PDF's page objects (compressed object streams hide some)
_PAGE_SIZE = (1224, 1584)  # a US Letter page at 144 dpi, as the APIs render one
ANTHROPIC_PAGE_TOKENS = 3000
GEMINI_PAGE_TOKENS = 258


def image_tokens(provider: str, width: int, height: int, detail: str | None = None) -> int:
    """The input tokens of one width x height image at provider."""
    if provider == "anthropic":
        scale = min(1.0, 1568 / max(width, height))
        return max(1, math.ceil(width * scale * height * scale / 750))
    if provider == "gemini":
        if width <= 384 and height <= 384:
            return 258
        return 258 * math.ceil(width / 768) * math.ceil(height / 768)
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def document_tokens(provider: str, pages: int) -> int:
    """The input tokens of a PDF of so many pages at provider."""
    if provider == "gemini":
        return GEMINI_PAGE_TOKENS * pages
    if provider == "anthropic":
        return ANTHROPIC_PAGE_TOKENS * pages
    return pages * (image_tokens(provider, *_PAGE_SIZE) + 500)  # the page's image, and its text


def size_of(data: bytes | None = None, path: str | None = None) -> tuple[int, int]:
    """An image's (width, height), read from its header only."""
    from PIL import Image

    with Image.open(io.BytesIO(data) if data is not None else path) as picture:
        return picture.size


def pages_of(data: bytes) -> int:
    """A PDF's pages, counted by its page objects (at least one)."""
    return max(1, len(_PAGE_OBJECT.findall(data)))


def ref_tokens(provider: str, ref: MediaRef) -> int:
    """The input tokens of one MediaRef at provider (its bytes' header read; a URL counted as a typical image)."""
    try:
        if ref.kind == IMAGE:
            if ref.origin == "pil":
                width, height = ref.source.size
            elif ref.origin in ("bytes", "path"):
                width, height = size_of(ref.source if ref.origin == "bytes" else None,
                                        ref.source if ref.origin == "path" else None)
            else:
                width = height = _UNKNOWN_SIDE
            if ref.max_side is not None and max(width, height) > ref.max_side:
                scale = ref.max_side / max(width, height)
                width, height = max(1, round(width * scale)), max(1, round(height * scale))
            return image_tokens(provider, width, height, ref.detail)
        if ref.origin == "bytes":
            return document_tokens(provider, pages_of(ref.source))
        if ref.origin == "path":
            with open(ref.source, "rb") as f:
                return document_tokens(provider, pages_of(f.read()))
        return document_tokens(provider, 1)
    except Exception:  # an unreadable header: counted as a typical image, the request itself will tell
        return image_tokens(provider, _UNKNOWN_SIDE, _UNKNOWN_SIDE)


def has_media(messages: list[dict]) -> bool:
    """Whether any message's content is a list of parts."""
    return any(not isinstance(m.get("content"), str) for m in messages)


def message_tokens(provider: str, messages: list[dict]) -> int:
    """The media input tokens of a request's messages at provider."""
    return sum(ref_tokens(provider, p) for m in messages if not isinstance(m.get("content"), str)
               for p in m.get("content") or () if isinstance(p, MediaRef))


def prompt_tokens(provider: str, messages: list[dict]) -> int:
    """A media request's input tokens before it is sent: its text (characters / 4) and its media by provider's
    rules. The rate limiter reserves them and max_prompt_tokens= checks them."""
    return -(-text_chars(messages) // constants.CHARS_PER_TOKEN) + message_tokens(provider, messages)


def text_chars(messages: list[dict]) -> int:
    """The characters of a request's text, its text parts included."""
    total = 0
    for m in messages:
        content = m.get("content") or ""
        total += len(content) if isinstance(content, str) else sum(
            len(p.get("text", "")) for p in content if isinstance(p, dict))
    return total
