"""Google Gemini (the Gemini Developer API) through the google-genai SDK."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import mimetypes
import os
from collections.abc import Mapping

import numpy as np

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from .. import constants
from ..errors import ProviderError, redact
from ..plan.media import MediaRef
from ..plan.media_template import refs
from ..plan.request import Request, Response
from ..plan.structured import OutputSchema
from ..plan.request import Embedded
from . import embeddings, media, replies, tool_wire
from .gemini_cache import ContextCache
from .prompt_cache import gemini_context_minimum
from .base import Provider, never_connected

# Our parameter names -> GenerateContentConfig's; anything else is passed to the config as it is.
_RENAMED = {"max_tokens": "max_output_tokens", "stop": "stop_sequences"}

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def _transient_errors() -> tuple[type[BaseException], ...]:
    """The transport errors (timeouts, refused or dropped connections) the SDK lets through."""
    found: list[type[BaseException]] = [asyncio.TimeoutError, TimeoutError, ConnectionError]
    for module_name in ("httpx", "httpx2"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        error = getattr(module, "TransportError", None)
        if isinstance(error, type):
            found.append(error)
    try:
        import aiohttp
    except ImportError:
        pass
    else:
        found.append(aiohttp.ClientError)
    return tuple(found)


_TRANSIENT = _transient_errors()


class GeminiProvider(Provider):
    """model="gemini:<name>"; base_url= (or the SDK's GOOGLE_GEMINI_BASE_URL) reaches another endpoint."""

    name = "gemini"
    key_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    base_url_env = "GOOGLE_GEMINI_BASE_URL"
    extra = "gemini"
    official_endpoints = (constants.GEMINI_ENDPOINT,)
    official_domain = constants.GEMINI_ENDPOINT_DOMAIN
    price_id = "google"
    batch_adapter = "llmframe.batch.gemini:GeminiBatches"
    batch_embeddings = True  # client.batches.create_embeddings (batch/gemini_embed.py)
    batch_limits = constants.GEMINI_BATCH_LIMITS
    embedding_limits = constants.GEMINI_EMBEDDING_LIMITS
    embedding_input_tokens = constants.GEMINI_EMBEDDING_INPUT_TOKENS
    media_urls = frozenset({("image", "gs"), ("document", "gs")})  # Cloud Storage URIs, as file_data
    media_max_bytes = {"image": constants.GEMINI_FILE_MAX_BYTES, "document": constants.GEMINI_FILE_MAX_BYTES}
    tool_calls = True
    tool_params = staticmethod(tool_wire.gemini_params)
    tool_messages = staticmethod(tool_wire.gemini_messages)

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self._client = self.open_client()  # now: a bad provider_options= fails before anything is sent

    def open_client(self) -> genai.Client:
        http_options = types.HttpOptions(
            base_url=self.base_url or None,
            timeout=int(self.timeout * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),  # llmframe retries, not the SDK
        )
        return genai.Client(api_key=self._api_key, http_options=http_options, **self.options)

    def resolved_url(self) -> str | None:
        """base_url=, else GOOGLE_GEMINI_BASE_URL, else the official endpoint (the SDK keeps it in its options)."""
        options = getattr(getattr(self.client, "_api_client", None), "_http_options", None)
        url = getattr(options, "base_url", None)
        return url or self.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or None

    async def _sent(self, call):
        """The SDK call's reply; its exceptions as ProviderError."""
        try:
            return await call
        except genai_errors.APIError as exc:
            raise self.api_error(exc) from None
        except _TRANSIENT as exc:
            kind = "request timed out" if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or \
                "timeout" in type(exc).__name__.lower() else f"connection error: {type(exc).__name__}: {exc}"
            raise ProviderError(redact(kind, *self.secrets), retryable=True,
                                connected=not never_connected(exc)) from None
        except ValueError as exc:  # a body the SDK could not parse
            raise ProviderError(redact(f"malformed response: {type(exc).__name__}", *self.secrets),
                                retryable=True) from None

    @classmethod
    def embedding_model(cls, model: str, *, dimensions: int | None, endpoint: str | None) -> None:
        """Gemini's embedding models (gemini-embedding-001, text-embedding-004), on any endpoint."""
        embeddings.check_model(cls.name, model, dimensions, embeddings.GEMINI_MODELS, "gemini-embedding-001")

    @classmethod
    def chat_model(cls, model: str, *, endpoint: str | None) -> None:
        embeddings.refuse_embedding_model(cls.name, model)

    @classmethod
    def embeds_media(cls, model: str) -> bool:
        """Gemini's multimodal embedding models (gemini-embedding-2...): google-genai's own test of the name."""
        return embeddings.is_multimodal_gemini(model)

    async def embed(self, texts: list[str], params: dict) -> Embedded:
        """embed_content with every text of the pack (the SDK sends one batchEmbedContents request).

        The Gemini API reports no token counts for embeddings: usage is estimated (characters / 4).
        """
        if params.get("truncate"):
            texts = embeddings.cut(texts, self.embedding_input_tokens)
        config = types.EmbedContentConfig(task_type=params.get("task_type"),
                                          output_dimensionality=params.get("dimensions"))
        contents = [t if isinstance(t, str) else await self._embedded_content(t) for t in texts]
        response = await self._sent(self.client.aio.models.embed_content(model=self.model, contents=contents,
                                                                         config=config))
        headers = _headers(getattr(getattr(response, "sdk_http_response", None), "headers", None))
        vectors = [np.asarray(e.values or [], dtype=np.float32) for e in (response.embeddings or [])]
        return Embedded(embeddings.matrix(vectors, len(texts), headers), embeddings.estimated_tokens(texts), headers)

    @classmethod
    def prompt_cache_params(cls, prefix, model: str) -> dict:
        """context=: the leading messages (system prompt and context) as one explicit cached content for the run,
        where they reach the model's documented minimum and at least two requests share them."""
        if prefix is None or not prefix.context or prefix.rows < 2 or \
                prefix.whole_tokens < gemini_context_minimum(model):
            return {}
        return {constants.GEMINI_CONTEXT_PARAM: prefix.messages}

    async def complete(self, request: Request) -> Response:
        messages, params = request.messages, request.params
        cached = None
        if constants.GEMINI_CONTEXT_PARAM in params:  # context=: the leading messages from the run's cached content
            lead = params[constants.GEMINI_CONTEXT_PARAM]
            params = {k: v for k, v in params.items() if k != constants.GEMINI_CONTEXT_PARAM}
            cached, messages = await self._context(messages, lead, "tools" in params)
        if media.has_media(messages):  # images and PDFs read now, as the request is sent
            messages = await self._with_media(messages)
        system, contents = to_contents(messages)
        config = self._config(params, system)
        if cached is not None:
            config.cached_content = cached
        response = await self._sent(self.client.aio.models.generate_content(model=self.model, contents=contents,
                                                                            config=config))
        headers = _headers(getattr(getattr(response, "sdk_http_response", None), "headers", None))
        candidates = response.candidates or []
        if not candidates:
            feedback = response.prompt_feedback
            if feedback is not None and feedback.block_reason is not None:
                reason = getattr(feedback.block_reason, "value", feedback.block_reason)
                raise ProviderError(f"the prompt was blocked: {reason}", retryable=False, headers=headers)
            raise ProviderError("the server returned no candidates", retryable=True, headers=headers)
        candidate = candidates[0]

        def usage() -> replies.Usage:  # the SDK checked the types; the counts' range and the texts' Unicode remain
            meta = response.usage_metadata
            if meta is None:
                return 0, 0, 0, 0
            return (replies.count(meta.prompt_token_count, "usageMetadata.promptTokenCount"),
                    replies.count(meta.candidates_token_count, "usageMetadata.candidatesTokenCount"),
                    replies.count(meta.cached_content_token_count, "usageMetadata.cachedContentTokenCount"), 0)

        def answer() -> tuple[str, str | None]:
            reason = finish_reason(candidate.finish_reason)
            return replies.unicode(candidate_text(candidate)), None if reason is None else replies.unicode(reason)

        response = replies.reply(usage, answer, headers)
        if "tools" in request.params:
            response.tool_calls = tool_wire.gemini_turn(candidate)
        return response

    async def _embedded_content(self, messages: list[dict]) -> types.Content:
        """A media row of a multimodal embedding (embeds_media): its messages' text and media, as one content."""
        _system, contents = to_contents(await self._with_media(messages))
        return types.Content(role="user", parts=[part for content in contents for part in content.parts or ()])

    async def _context(self, messages: list[dict], lead: int, tools: bool) -> tuple[str | None, list[dict]]:
        """(the run's cached content, the messages left to send), or (None, all of them) where it cannot serve."""
        if tools or not isinstance(lead, int) or not 0 < lead < len(messages):
            return None, messages  # Gemini takes no tools beside a cached content
        if self.__dict__.get("_context_cache") is None:
            self._context_cache = ContextCache(lambda: self.client, self.model, self._sent)
        system, contents = to_contents(messages[:lead])
        name = await self._context_cache.name(system, contents)
        return (None, messages) if name is None else (name, messages[lead:])

    async def _with_media(self, messages: list[dict]) -> list[dict]:
        """Media parts inline; a request whose media pass Gemini's inline limit sends them through the Files API."""
        if sum(ref.size for ref in refs(messages)) <= constants.GEMINI_INLINE_MAX_BYTES:
            return await media.messages_with(messages, media_part)

        async def part(ref: MediaRef) -> types.Part:
            if ref.url is not None:
                return media_part(ref, None)
            data, mime = await media.load(ref)
            file = await self._uploaded(ref.digest, data, mime)
            return types.Part.from_uri(file_uri=file.uri, mime_type=mime)

        return [{**m, "content": [await part(p) if isinstance(p, MediaRef) else p for p in m["content"]]}
                if isinstance(m.get("content"), list) else m for m in messages]  # a tools run's own turns as they are

    async def _uploaded(self, digest: str, data: bytes, mime: str):
        """The File of these bytes, uploaded once per distinct file for the run (aclose deletes them)."""
        uploads = self.__dict__.setdefault("_uploads", {})
        task = uploads.get(digest)
        if task is None or (task.done() and task.exception() is not None):  # a failed upload is tried again
            task = uploads[digest] = asyncio.ensure_future(self.upload_file(data, mime, f"llmframe-{digest}"))
        return await asyncio.shield(task)

    async def upload_file(self, data: bytes, mime: str, display_name: str):
        """A File (its name and uri) of these bytes, uploaded through the Files API; its errors as ProviderError."""
        return await self._sent(self.client.aio.files.upload(file=io.BytesIO(data), config=types.UploadFileConfig(
            mime_type=mime, display_name=display_name)))

    async def delete_file(self, name: str) -> None:
        """Delete an uploaded file (it would stay 48 hours, counted against the project's storage); best effort."""
        with contextlib.suppress(Exception):
            await self.client.aio.files.delete(name=name)

    async def _delete_uploads(self) -> None:
        """Delete the files this run uploaded."""
        for task in self.__dict__.pop("_uploads", {}).values():
            if task.done() and task.exception() is None:
                await self.delete_file(task.result().name)

    def _config(self, params: dict, system: str | None) -> types.GenerateContentConfig:
        fields = {_RENAMED.get(k, k): v for k, v in params.items()}
        if system is not None:
            fields["system_instruction"] = system
        return types.GenerateContentConfig(**fields)

    def api_error(self, exc: genai_errors.APIError) -> ProviderError:
        """The SDK's APIError as a ProviderError: a rejected key is a 401, so the run stops at once."""
        code = exc.code
        message = exc.message or exc.status or str(exc)
        status = code
        text = f"{message} {exc.status or ''} {exc.details or ''}"
        if code in (400, 401, 403) and ("API key" in text or "API_KEY" in text):
            status = 401  # a bad or missing key: llmframe aborts the run
        elif code == 403 and exc.status == "PERMISSION_DENIED" and "key" in text.lower():
            status = 401
        response = getattr(exc, "response", None)
        headers = _headers(getattr(response, "headers", None))
        return ProviderError(redact(f"HTTP {code}: {message}", *self.secrets), status=status, headers=headers,
                             body=text)

    @classmethod
    def output_params(cls, schema: OutputSchema, *, strict: bool, structured: str) -> dict:
        """JSON mode with the schema as plain JSON Schema (responseJsonSchema); JSON mode alone for json_object."""
        if structured == "json_object":
            return {"response_mime_type": "application/json"}
        return {"response_mime_type": "application/json", "response_json_schema": schema.json_schema}

    async def aclose(self) -> None:
        if self._client is None:
            return
        await self._delete_uploads()
        cache = self.__dict__.pop("_context_cache", None)
        if cache is not None:
            await cache.close()
        close = getattr(self._client.aio, "aclose", None)
        if close is not None:
            await close()
        self._client = None  # a next run (the same instance passed as model= again) opens a new one


def to_contents(messages: list[dict]) -> tuple[str | None, list[types.Content]]:
    """OpenAI-style messages -> (system instruction, Gemini contents)."""
    system: list[str] = []
    contents: list[types.Content] = []
    for message in messages:
        if "parts" in message:  # already Gemini's (a tools run's function calls and responses), as JSON
            contents.append(types.Content.model_validate_json(json.dumps(message)))
            continue
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(_message_text(content))
        else:
            gemini_role = "model" if role == "assistant" else "user"
            parts = [p if isinstance(p, types.Part) else types.Part(text=p.get("text", "")) for p in content] \
                if isinstance(content, list) else [types.Part(text=_message_text(content))]  # media: media_part
            contents.append(types.Content(role=gemini_role, parts=parts))
    return ("\n\n".join(system) if system else None), contents


def media_part(ref: MediaRef, loaded: tuple[bytes, str] | None) -> types.Part:
    """An image or PDF as a Part: its bytes inline, or a gs:// URI as file_data."""
    if loaded is None:
        return types.Part.from_uri(file_uri=ref.url, mime_type=mimetypes.guess_type(ref.url)[0])
    data, mime = loaded
    return types.Part.from_bytes(data=data, mime_type=mime)


def _message_text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def candidate_text(candidate) -> str:
    """A candidate's answer text: its text parts joined, thoughts left out."""
    content = candidate.content
    if content is None or not content.parts:
        return ""
    return "".join(part.text for part in content.parts if part.text and not part.thought)


def finish_reason(reason) -> str | None:
    """Gemini's finish reason in llmframe's vocabulary (OpenAI's)."""
    if reason is None:
        return None
    value = getattr(reason, "value", reason)
    value = str(value)
    return _FINISH.get(value, value.lower())


def _headers(headers) -> dict[str, str]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) or hasattr(headers, "items") else headers
    return {str(k).lower(): str(v) for k, v in items}
