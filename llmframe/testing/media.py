"""Images and documents on the simulator's routes: checked as the real APIs check them, answered from their bytes.

Each route turns its vendor's media parts into one shape in the chat body the answer function sees:
{"type": "media", "kind": "image" | "document", "mime", "sha256" (of the bytes), "bytes", "tokens"}, or
{"type": "media", "kind", "url"} for a URL passed by reference. The default answer to a request with media is
media_answer(text, *media): a test checks that row i got image i's answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from ..cost.media import document_tokens, image_tokens, pages_of, size_of
from ..plan.media import DOCUMENT_TYPES, IMAGE_TYPES, sniff
from .answers import digest_answer, media_suffix
from .openai_chat import BadRequest

OPENAI_IMAGE_BYTES = 20 * 2**20  # the APIs' limits on one inline image or document
ANTHROPIC_IMAGE_BYTES = 5 * 2**20
PDF_BYTES = 32 * 2**20
GEMINI_REQUEST_BYTES = 20 * 2**20  # Gemini: the whole inline request


def media_answer(text: str, *media: bytes | str) -> str:
    """The simulator's default answer to a user message of this text and these media (bytes, or URLs passed on)."""
    return digest_answer(text + media_suffix([f"url:{m}" if isinstance(m, str) else hashlib.sha256(m).hexdigest()[:16]
                                              for m in media]))


def _decode(data: Any, *, urlsafe: bool = False) -> bytes:
    if not isinstance(data, str):
        raise ValueError("not a string")
    if urlsafe and ("-" in data or "_" in data):
        data = data.replace("-", "+").replace("_", "/")
    if urlsafe:
        data += "=" * (-len(data) % 4)
    return base64.b64decode(data, validate=True)


def _part(kind: str, data: bytes, provider: str, detail: str | None = None) -> dict:
    """The normalised part of media whose bytes came inline, with the tokens the provider bills for it."""
    mime = sniff(data[:16])
    if kind == "image":
        width, height = size_of(data)
        tokens = image_tokens(provider, width, height, detail)
    else:
        tokens = document_tokens(provider, pages_of(data))
    return {"type": "media", "kind": kind, "mime": mime, "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "tokens": tokens}


def _url_part(kind: str, url: str) -> dict:
    return {"type": "media", "kind": kind, "url": url, "tokens": image_tokens("openai", 1024, 1024)}


def openai_content(content: Any) -> Any:
    """An OpenAI message content with its image_url and file parts checked and normalised (a string as it is)."""
    if not isinstance(content, list):
        return content
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            out.append(_openai_image(part.get("image_url")))
        elif kind == "file":
            out.append(_openai_file(part.get("file")))
        elif kind == "text":
            if not isinstance(part.get("text"), str):
                raise BadRequest("Invalid type for 'messages[].content[].text': expected a string.")
            out.append(part)
        else:
            raise BadRequest(f"Invalid value: {kind!r}. Supported values are: 'text', 'image_url', 'input_audio', "
                             "'refusal', and 'file'.")
    return out


def responses_content(content: list) -> list[dict]:
    """A Responses API message content (input_text, input_image, input_file parts) checked and normalised as
    openai_content normalises chat's: text parts, and media parts with their bytes' digest and tokens."""
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise BadRequest("Invalid type for 'input[].content[].text': expected a string.")
            out.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            if part.get("detail") not in ("auto", "low", "high", "original"):
                raise BadRequest(f"Invalid value: {part.get('detail')!r} for 'input[].content[].detail'. Supported "
                                 "values are: 'low', 'high', 'auto', and 'original'.")
            if not isinstance(part.get("image_url"), str):
                raise BadRequest("Missing required parameter: 'input[].content[].image_url' (or file_id).")
            detail = None if part["detail"] == "original" else part["detail"]
            out.append(_openai_image({"url": part["image_url"], "detail": detail}))
        elif kind == "input_file":
            if isinstance(part.get("file_url"), str):
                out.append(_url_part("document", part["file_url"]))
            else:
                out.append(_openai_file({"file_data": part.get("file_data")}))
        else:
            raise BadRequest(f"Invalid value: {kind!r}. Supported values are: 'input_text', 'input_image', "
                             "'input_file', and 'input_audio'.")
    return out


def _openai_image(spec: Any) -> dict:
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise BadRequest("Missing required parameter: 'messages[].content[].image_url.url'.")
    detail = spec.get("detail")
    if detail not in (None, "auto", "low", "high"):
        raise BadRequest(f"Invalid value: {detail!r}. Supported values are: 'auto', 'low', and 'high'.")
    url = spec["url"]
    if url.startswith(("http://", "https://")):
        return _url_part("image", url)
    header = url.partition(",")[0]
    if not header.startswith("data:image/") or not header.endswith(";base64"):
        raise BadRequest("Invalid image URL: expected an http(s) URL or a base64 data URL of an image.")
    data = _checked_payload(url, IMAGE_TYPES, OPENAI_IMAGE_BYTES, (
        "You uploaded an unsupported image. Please make sure your image is valid.",
        "You uploaded an unsupported image. Please make sure your image has of one the following formats: "
        "['png', 'jpeg', 'gif', 'webp'].", "Image is too large: the maximum size is 20 MB."))
    return _part("image", data, "openai", detail)


def _openai_file(spec: Any) -> dict:
    if not isinstance(spec, dict) or not isinstance(spec.get("file_data"), str):
        raise BadRequest("Missing required parameter: 'messages[].content[].file.file_data'.")
    if spec["file_data"].partition(",")[0] != "data:application/pdf;base64":
        raise BadRequest("Invalid file data: expected a base64 data URL with type application/pdf.")
    data = _checked_payload(spec["file_data"], DOCUMENT_TYPES, PDF_BYTES, (
        "Invalid file data: the base64 could not be decoded.", "Invalid file data: the file is not a PDF.",
        "File is too large: the maximum size is 32 MB."))
    return _part("document", data, "openai")


def _checked_payload(url: str, types: tuple, limit: int, problems: tuple[str, str, str]) -> bytes:
    """A data URL's bytes, or BadRequest with the API's message: (bad base64, another type, too large)."""
    try:
        data = _decode(url.partition(",")[2])
    except (binascii.Error, ValueError):
        raise BadRequest(problems[0]) from None
    if sniff(data[:16]) not in types:
        raise BadRequest(problems[1])
    if len(data) > limit:
        raise BadRequest(problems[2])
    return data


def anthropic_content(content: Any) -> list[dict]:
    """An Anthropic content's image and document blocks checked and normalised; text blocks as they are."""
    out = []
    for block in content if isinstance(content, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in ("image", "document"):
            continue
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
            raise BadRequest(f"messages: {kind}.source: Input tag {source and source.get('type')!r} found using "
                             "'type' does not match any of the expected tags: 'base64', 'url'")
        if source["type"] == "url":
            if not isinstance(source.get("url"), str):
                raise BadRequest(f"messages: {kind}.source.url: Field required")
            out.append(_url_part(kind, source["url"]))
            continue
        declared = source.get("media_type")
        allowed = IMAGE_TYPES if kind == "image" else DOCUMENT_TYPES
        if declared not in allowed:
            raise BadRequest(f"messages: {kind}.source.media_type: Input should be "
                             + " or ".join(f"'{t}'" for t in allowed))
        try:
            data = _decode(source.get("data"))
        except (binascii.Error, ValueError):
            raise BadRequest(f"messages: {kind}.source.base64: invalid base64 data") from None
        if sniff(data[:16]) != declared:
            raise BadRequest(f"messages: {kind}.source.base64: the {kind} does not match the provided media type "
                             f"{declared}")
        limit = ANTHROPIC_IMAGE_BYTES if kind == "image" else PDF_BYTES
        if len(data) > limit:
            raise BadRequest(f"messages: {kind}.source.base64: {kind} exceeds {limit // 2**20} MB maximum: "
                             f"{len(data)} bytes > {limit} bytes")
        out.append(_part(kind, data, "anthropic"))
    return out


def gemini_content(parts: Any, inline: list[int], files: Any = None) -> list[dict]:
    """A Gemini Content's inlineData and fileData parts checked and normalised; inline gathers their bytes.

    files: file id -> (bytes, file object) or None, for fileData parts naming a file uploaded to the simulator.
    """
    out = []
    for i, part in enumerate(parts if isinstance(parts, list) else []):
        if not isinstance(part, dict):
            continue
        blob = part.get("inlineData") or part.get("inline_data")
        uri = part.get("fileData") or part.get("file_data")
        if blob is not None:
            mime = blob.get("mimeType") or blob.get("mime_type")
            if mime not in (*IMAGE_TYPES, *DOCUMENT_TYPES):
                raise BadRequest(f"Unsupported MIME type: {mime}")
            try:
                data = _decode(blob.get("data"), urlsafe=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"Invalid value at 'contents.parts[{i}].inline_data.data' (TYPE_BYTES), "
                                 "Base64 decoding failed") from None
            if sniff(data[:16]) != mime:
                raise BadRequest(f"Unable to process input image: the data is not {mime}")
            inline.append(len(data))
            if sum(inline) > GEMINI_REQUEST_BYTES:
                raise BadRequest(f"Request payload size exceeds the limit: {GEMINI_REQUEST_BYTES} bytes.")
            out.append(_part("image" if mime in IMAGE_TYPES else "document", data, "gemini"))
        elif uri is not None:
            file_uri = uri.get("fileUri") or uri.get("file_uri")
            if not isinstance(file_uri, str):
                raise BadRequest(f"* GenerateContentRequest.contents.parts[{i}].file_data.file_uri: required")
            mime = uri.get("mimeType") or uri.get("mime_type") or ""
            kind = "document" if mime == "application/pdf" else "image"
            if "/files/" in file_uri and files is not None:  # a file uploaded here: answered from its bytes
                found = files(file_uri.rsplit("/", 1)[-1])
                if found is None:
                    raise BadRequest(f"File {file_uri} does not exist or you do not have permission to access it.")
                out.append(_part(kind, found[0], "gemini"))
                continue
            out.append(_url_part(kind, file_uri))
    return out


def with_media(text: str, media: list[dict]) -> Any:
    """A chat content: the text alone where there are no media, else text and media parts."""
    if not media:
        return text
    return ([{"type": "text", "text": text}] if text else []) + media
