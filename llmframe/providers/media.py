"""Media as each API takes them, made when their request is sent: bytes read, downscaled and encoded then.

A request's messages hold MediaRefs (plan/media.py), never bytes: only the requests in flight hold a copy of
their media, so memory is O(concurrency), not O(rows).
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Awaitable, Callable
from typing import Any

from .. import constants
from ..errors import ProviderError
from ..plan.media import IMAGE, MediaRef, sniff

_THREAD_BYTES = 1 << 20  # files larger than this are read in a worker thread, off the event loop
_SAVE_AS = {"image/jpeg": ("JPEG", "image/jpeg"), "image/png": ("PNG", "image/png"),
            "image/webp": ("WEBP", "image/webp"), "image/gif": ("PNG", "image/png")}


def has_media(messages: list[dict]) -> bool:
    """Whether any message's content is a list of parts (the text-only hot path skips everything here)."""
    return any(not isinstance(m.get("content"), str) for m in messages)


async def load(ref: MediaRef) -> tuple[bytes, str]:
    """The bytes to send and their MIME type: read, fetched or encoded now, and downscaled where asked."""
    if ref.problem is not None:
        raise ProviderError(ref.problem, retryable=False, connected=False)
    if ref.origin == "bytes":
        data, mime = ref.source, ref.mime
    elif ref.origin == "path":
        data = await _read(ref.source, ref.size)
        mime = sniff(data[:16])
        if mime != ref.mime:  # changed since it was keyed: its answer would be filed under the old bytes
            raise ProviderError(f"{ref.source!r} changed after the run was planned: run it again", retryable=False,
                                connected=False)
    elif ref.origin == "url":
        data = await fetch(ref.source)
        mime = sniff(data[:16])
        if mime is None:
            raise ProviderError(f"{ref.source} is not PNG, JPEG, WEBP, GIF or PDF (by its first bytes)",
                                retryable=False)
    else:  # a PIL image
        return await asyncio.to_thread(_encode_pil, ref.source, ref.max_side)
    if ref.kind == IMAGE and ref.max_side is not None:
        return await asyncio.to_thread(downscale, data, mime, ref.max_side)
    return data, mime


async def _read(path: str, size: int) -> bytes:
    if size <= _THREAD_BYTES:
        with open(path, "rb") as f:
            return f.read()
    return await asyncio.to_thread(_read_file, path)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def fetch(url: str) -> bytes:
    """fetch_urls=True: the URL's bytes, at most FETCH_URL_MAX_BYTES within FETCH_URL_TIMEOUT_SECONDS."""
    import aiohttp

    cap = constants.FETCH_URL_MAX_BYTES
    timeout = aiohttp.ClientTimeout(total=constants.FETCH_URL_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as reply:
            if reply.status >= 400:
                raise ProviderError(f"fetching {url}: HTTP {reply.status}", status=None,
                                    retryable=reply.status >= 500 or reply.status == 429)
            if (reply.content_length or 0) > cap:
                raise ProviderError(f"{url} has {reply.content_length:,} bytes, more than fetch_urls takes "
                                    f"({cap:,})", retryable=False)
            data = await reply.content.read(cap + 1)
    except asyncio.TimeoutError:
        raise ProviderError(f"fetching {url} timed out", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise ProviderError(f"fetching {url}: {type(exc).__name__}: {exc}", retryable=True) from None
    if len(data) > cap:
        raise ProviderError(f"{url} has more than {cap:,} bytes, more than fetch_urls takes", retryable=False)
    return data


def downscale(data: bytes, mime: str, max_side: int) -> tuple[bytes, str]:
    """The image with its longer side at most max_side pixels (as it is when already that small)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as picture:
        if max(picture.size) <= max_side:
            return data, mime
        picture.thumbnail((max_side, max_side))
        return _save(picture, *_SAVE_AS[mime])


def _encode_pil(picture: Any, max_side: int | None) -> tuple[bytes, str]:
    if max_side is not None and max(picture.size) > max_side:
        picture = picture.copy()
        picture.thumbnail((max_side, max_side))
    return _save(picture, "PNG", "image/png")


def _save(picture: Any, form: str, mime: str) -> tuple[bytes, str]:
    out = io.BytesIO()
    if form == "JPEG" and picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    picture.save(out, format=form)
    return out.getvalue(), mime


def data_url(data: bytes, mime: str) -> str:
    """data:<mime>;base64,..."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


async def openai_part(ref: MediaRef) -> dict:
    """Chat completions: image_url (a URL, or a data URL) with its detail; a PDF as a file part."""
    if ref.kind == IMAGE:
        url = ref.url or data_url(*await load(ref))
        image = {"url": url} if ref.detail is None else {"url": url, "detail": ref.detail}
        return {"type": "image_url", "image_url": image}
    data, mime = await load(ref)
    return {"type": "file", "file": {"filename": f"{ref.digest or 'document'}.pdf", "file_data": data_url(data, mime)}}


async def anthropic_part(ref: MediaRef) -> dict:
    """Messages API: an image or document block, its source base64 or a URL."""
    block = "image" if ref.kind == IMAGE else "document"
    if ref.url is not None:
        return {"type": block, "source": {"type": "url", "url": ref.url}}
    data, mime = await load(ref)
    return {"type": block, "source": {"type": "base64", "media_type": mime,
                                      "data": base64.b64encode(data).decode()}}


async def messages_with(messages: list[dict], part: Callable[[MediaRef], Awaitable[dict]]) -> list[dict]:
    """The messages with every MediaRef made into its API's part, and text parts kept."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            out.append(message)
            continue
        parts = await asyncio.gather(*(part(p) if isinstance(p, MediaRef) else _echo(p) for p in content))
        out.append({**message, "content": list(parts)})
    return out


async def _echo(part: dict) -> dict:
    return part
