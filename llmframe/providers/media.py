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
    if ref.origin == "url":
        return finish(ref, await fetch(ref.source))
    if ref.origin == "pil" or ref.max_side is not None or ref.size > _THREAD_BYTES:
        return await asyncio.to_thread(load_now, ref)  # Pillow and large files off the event loop
    return load_now(ref)


def load_now(ref: MediaRef) -> tuple[bytes, str]:
    """load, in this thread (batch files are built here); a URL fetched with urllib."""
    if ref.problem is not None:
        raise ProviderError(ref.problem, retryable=False, connected=False)
    if ref.origin == "pil":
        return _encode_pil(ref.source, ref.max_side)
    if ref.origin == "bytes":
        data = ref.source
    elif ref.origin == "path":
        with open(ref.source, "rb") as f:
            data = f.read()
        if sniff(data[:16]) != ref.mime:  # changed since it was keyed: its answer would be filed under the old bytes
            raise ProviderError(f"{ref.source!r} changed after the run was planned: run it again", retryable=False,
                                connected=False)
    else:
        data = fetch_now(ref.source)
    return finish(ref, data)


def finish(ref: MediaRef, data: bytes) -> tuple[bytes, str]:
    """The bytes as sent: checked (a fetched URL's type is known only now) and downscaled where asked."""
    mime = sniff(data[:16])
    if mime is None:
        raise ProviderError(f"{ref.source if ref.origin == 'url' else 'the value'} is not PNG, JPEG, WEBP, GIF or PDF "
                            "(by its first bytes)", retryable=False, connected=False)
    if ref.kind == IMAGE and ref.max_side is not None:
        return downscale(data, mime, ref.max_side)
    return data, mime


async def fetch(url: str) -> bytes:
    """fetch_urls=True: the URL's bytes, at most FETCH_URL_MAX_BYTES within FETCH_URL_TIMEOUT_SECONDS."""
    import aiohttp

    cap = constants.FETCH_URL_MAX_BYTES
    timeout = aiohttp.ClientTimeout(total=constants.FETCH_URL_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as reply:
            _check_reply(url, reply.status, reply.content_length)
            data = await reply.content.read(cap + 1)
    except asyncio.TimeoutError:
        raise ProviderError(f"fetching {url} timed out", retryable=True, connected=False) from None
    except aiohttp.ClientError as exc:
        raise ProviderError(f"fetching {url}: {type(exc).__name__}: {exc}", retryable=True, connected=False) from None
    return _capped(url, data)


def fetch_now(url: str) -> bytes:
    """fetch, in this thread."""
    import urllib.error
    import urllib.request

    cap = constants.FETCH_URL_MAX_BYTES
    try:
        with urllib.request.urlopen(url, timeout=constants.FETCH_URL_TIMEOUT_SECONDS) as reply:
            length = reply.headers.get("Content-Length")
            _check_reply(url, reply.status, int(length) if length and length.isdigit() else None)
            data = reply.read(cap + 1)
    except urllib.error.HTTPError as exc:
        _check_reply(url, exc.code, None)
        raise
    except (OSError, ValueError) as exc:
        raise ProviderError(f"fetching {url}: {type(exc).__name__}: {exc}", retryable=True, connected=False) from None
    return _capped(url, data)


def _check_reply(url: str, status: int, length: int | None) -> None:
    cap = constants.FETCH_URL_MAX_BYTES
    if status >= 400:
        raise ProviderError(f"fetching {url}: HTTP {status}", retryable=status >= 500 or status == 429,
                            connected=False)
    if (length or 0) > cap:
        raise ProviderError(f"{url} has {length:,} bytes, more than fetch_urls takes ({cap:,})", retryable=False,
                            connected=False)


def _capped(url: str, data: bytes) -> bytes:
    cap = constants.FETCH_URL_MAX_BYTES
    if len(data) > cap:
        raise ProviderError(f"{url} has more than {cap:,} bytes, more than fetch_urls takes", retryable=False,
                            connected=False)
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


def openai_part(ref: MediaRef, loaded: tuple[bytes, str] | None) -> dict:
    """Chat completions: image_url (a URL, or a data URL) with its detail; a PDF as a file part."""
    if ref.kind == IMAGE:
        url = ref.url or data_url(*loaded)
        image = {"url": url} if ref.detail is None else {"url": url, "detail": ref.detail}
        return {"type": "image_url", "image_url": image}
    return {"type": "file", "file": {"filename": f"{ref.digest or 'document'}.pdf", "file_data": data_url(*loaded)}}


def responses_part(ref: MediaRef, loaded: tuple[bytes, str] | None) -> dict:
    """The Responses API: input_image (a URL, or a data URL; its detail, which the API requires, "auto" unless
    asked) and a PDF as an input_file of file data."""
    if ref.kind == IMAGE:
        return {"type": "input_image", "image_url": ref.url or data_url(*loaded), "detail": ref.detail or "auto"}
    return {"type": "input_file", "filename": f"{ref.digest or 'document'}.pdf", "file_data": data_url(*loaded)}


def anthropic_part(ref: MediaRef, loaded: tuple[bytes, str] | None) -> dict:
    """Messages API: an image or document block, its source base64 or a URL."""
    block = "image" if ref.kind == IMAGE else "document"
    if ref.url is not None:
        return {"type": block, "source": {"type": "url", "url": ref.url}}
    data, mime = loaded
    return {"type": block, "source": {"type": "base64", "media_type": mime, "data": base64.b64encode(data).decode()}}


Part = Callable[[MediaRef, "tuple[bytes, str] | None"], Any]  # a MediaRef and its bytes (None for a URL passed on)


async def messages_with(messages: list[dict], part: Part) -> list[dict]:
    """The messages with every MediaRef made into its API's part (its bytes loaded now), text parts kept."""
    async def made(ref: MediaRef):
        return part(ref, None if ref.url is not None else await load(ref))

    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) or content is None:
            out.append(message)
            continue
        refs = [p for p in content if isinstance(p, MediaRef)]
        done = iter([await made(refs[0])] if len(refs) == 1 else await asyncio.gather(*map(made, refs)))
        out.append({**message, "content": [next(done) if isinstance(p, MediaRef) else p for p in content]})
    return out


def messages_now(messages: list[dict], part: Part) -> list[dict]:
    """messages_with, in this thread: for batch files."""
    return [message if isinstance(message.get("content"), str) or message.get("content") is None else
            {**message, "content": [part(p, None if p.url is not None else load_now(p)) if isinstance(p, MediaRef)
                                    else p for p in message["content"]]} for message in messages]
