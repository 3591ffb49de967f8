"""OpenAI chat completions, and every OpenAI-compatible server: the official SDK, and a lean hot path."""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import re
from typing import TYPE_CHECKING

from .. import constants
from ..errors import ConfigError, ProviderError, SchemaError
from ..plan.request import Request, Response, loads
from ..plan.structured import OutputSchema
from ..plan.request import Embedded
from . import embeddings, media, replies, responses, tool_wire
from .base import Provider
from .http import JSONClient

if TYPE_CHECKING:
    import openai

if importlib.util.find_spec("openai") is None:  # found, not imported: the lean path may never need it
    raise ImportError("No module named 'openai'", name="openai")

# Our parameters that the SDK takes as keyword arguments; anything else goes in extra_body.
_SDK_PARAMS = frozenset({"temperature", "top_p", "max_tokens", "seed", "stop"})


TRANSPORTS = ("http", "sdk")
# provider_options the lean path resolves itself, as the SDK would: with no others, the SDK (0.4-0.8 s to
# import, most of a fresh process's first call) is not imported at all on the lean path.
_LEAN_OPTIONS = frozenset({"organization", "project", "default_headers"})
_PER_MESSAGE, _PER_REPLY = 3, 3  # chat framing: tokens around each message, and priming the reply


@functools.cache
def _encoding(model: str):
    """tiktoken's encoding for a model name, or None (not installed, unknown model, or not loadable)."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        return tiktoken.encoding_for_model(model)
    except Exception:  # an unknown model (KeyError), or the encoding cannot be downloaded (offline)
        return None


class OpenAIProvider(Provider):
    """model="openai:<name>"; base_url= or OPENAI_BASE_URL reaches any compatible server.

    The SDK resolves configuration and authentication. Requests go through the lean JSON client
    (transport "http", the default: a quarter of the SDK's CPU per request) or through the SDK
    itself (provider_options={"transport": "sdk"}, for setups the lean path does not cover).
    """

    name = "openai"
    key_env = ("OPENAI_API_KEY",)
    key_hint = " (a local OpenAI-compatible server accepts any non-empty key)"
    base_url_env = "OPENAI_BASE_URL"
    strict_outputs = True
    official_endpoints = (constants.OPENAI_ENDPOINT,)
    price_id = "openai"
    batch_adapter = "llmframe.batch.openai:OpenAIBatches"
    batch_embeddings = True
    batch_limits = constants.OPENAI_BATCH_LIMITS
    embedding_limits = constants.OPENAI_EMBEDDING_LIMITS
    embedding_input_tokens = constants.OPENAI_EMBEDDING_INPUT_TOKENS
    media_urls = frozenset({("image", "http"), ("image", "https")})  # PDFs go as file data only
    media_max_bytes = constants.OPENAI_MEDIA_MAX_BYTES
    logprob_params = {"logprobs": True}  # choices[0].logprobs.content: a cascade's confidence
    tool_calls = True
    tool_params = staticmethod(tool_wire.openai_params)
    tool_messages = staticmethod(tool_wire.openai_messages)

    @classmethod
    def token_counter(cls, model: str):
        """tiktoken, when it is installed and knows the model (it downloads encodings once, then reads its cache)."""
        encoding = _encoding(model)
        if encoding is None:
            return None

        def count(messages: list[dict]) -> int:
            texts = [m.get("content") or "" for m in messages]
            texts = [t if isinstance(t, str) else "".join(p.get("text", "") for p in t if isinstance(p, dict))
                     for t in texts]  # text and media parts: the text here, the media by cost/media.py
            return sum(map(len, encoding.encode_ordinary_batch(texts))) + _PER_MESSAGE * len(texts) + _PER_REPLY

        return count, f"tiktoken:{encoding.name}"

    def tiktoken_encoding(self):
        """The model's tiktoken encoding (truncate=True cuts inputs by it), or None where it cannot be had."""
        return _encoding(self.model)

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self.api = self.options.pop("api", None) or "chat"  # the plan's api= (see responses.py)
        if self.api == "responses":
            self.batch_adapter = "llmframe.batch.openai:ResponsesBatches"
        self.transport = self.options.pop("transport", "http")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport must be one of {TRANSPORTS}, got {self.transport!r}")
        self._http: JSONClient | None = None
        if self.transport == "http":
            if set(self.options) <= _LEAN_OPTIONS and self.name == "openai":
                headers, base = _lean_config(self.base_url, self.options)
            else:
                client = self.client
                headers = {k: v for k, v in client.default_headers.items() if isinstance(v, str)}
                base = str(client.base_url)
            headers.update(self.lean_auth())
            self._base = base
            self._url, self._embeddings_url, self._responses_url = self.lean_urls(base.rstrip("/"))
            self._http = JSONClient(headers, max_connections=self.max_concurrency, timeout=self.timeout,
                                    secrets=self.secrets)

    def lean_auth(self) -> dict[str, str]:
        """The lean client's authentication header."""
        return {"Authorization": f"Bearer {self._api_key}"}

    def lean_urls(self, base: str) -> tuple[str, str, str]:
        """The lean client's chat completions, embeddings and responses URLs under the SDK's base URL."""
        return base + "/chat/completions", base + "/embeddings", base + "/responses"

    def open_client(self) -> openai.AsyncOpenAI:
        import openai

        sdk = self.transport == "sdk"
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=constants.SDK_MAX_RETRIES,
            http_client=self.sdk_http_client(openai.DefaultAsyncHttpxClient) if sdk else idle_client(),
            **self.options,
        )

    def resolved_url(self) -> str | None:
        if self._http is not None:
            return self._base
        return str(self.client.base_url)  # base_url=, else OPENAI_BASE_URL, else the official endpoint

    async def complete(self, request: Request) -> Response:
        if media.has_media(request.messages):  # images and PDFs read and encoded now, as the request is sent
            part = media.responses_part if self.api == "responses" else media.openai_part
            request = Request(request.key, await media.messages_with(request.messages, part), request.params)
        if self.api == "responses":
            return await self._respond(request)
        if self._http is None:
            return await self._complete_sdk(request)
        try:
            headers, body = await self._http.post(self._url, {"model": self.model, "messages": request.messages,
                                                              **responses.chat_params(request.params)})
        except ProviderError as exc:
            raise _with_hint(exc, request) from None
        return _with_calls(replies.openai(body, headers), body, request)

    async def _complete_sdk(self, request: Request) -> Response:
        import openai

        params = responses.chat_params(request.params)
        known = {k: v for k, v in params.items() if k in _SDK_PARAMS}
        extra = {k: v for k, v in params.items() if k not in _SDK_PARAMS}
        try:
            with self.stainless_errors(openai):
                # The raw variant: the rate-limit headers of every reply feed the limiter. Its body is read
                # as the lean path reads it, with every field's type checked (the SDK checks none).
                raw = await self.client.chat.completions.with_raw_response.create(
                    model=self.model, messages=request.messages, extra_body=extra or None, **known
                )
                body = loads(raw.content)
        except ProviderError as exc:
            raise _with_hint(exc, request) from None
        return _with_calls(replies.openai(body, raw.headers), body, request)

    async def _respond(self, request: Request) -> Response:
        """The request through the Responses API (api="responses"): the lean client, or the SDK's raw response."""
        sent = responses.body(self.model, request.messages, request.params)
        if self._http is not None:
            headers, body = await self._http.post(self._responses_url, sent)
            return responses.read(body, headers)
        import openai

        with self.stainless_errors(openai):
            rest = {k: v for k, v in sent.items() if k not in ("model", "input")}
            raw = await self.client.responses.with_raw_response.create(model=sent["model"], input=sent["input"],
                                                                       extra_body=rest or None)
            return responses.read(loads(raw.content), raw.headers)

    @classmethod
    def check_api(cls, api: str | None, params: dict) -> None:
        """Chat completions' parameters refused on the Responses API, and the reverse (responses.check)."""
        responses.check(api or "chat", params)

    @classmethod
    def embedding_model(cls, model: str, *, dimensions: int | None, endpoint: str | None) -> None:
        """On OpenAI's own endpoint, only its embedding models embed; any model may on a compatible server."""
        if endpoint is None:
            embeddings.check_model(cls.name, model, dimensions, embeddings.OPENAI_MODELS, "text-embedding-3-small")

    @classmethod
    def chat_model(cls, model: str, *, endpoint: str | None) -> None:
        if endpoint is None:
            embeddings.refuse_embedding_model(cls.name, model)

    async def embed(self, texts: list[str], params: dict) -> Embedded:
        """POST /embeddings with every text of the pack; vectors come as base64 (a sixth of JSON's bytes)."""
        if params.get("truncate"):
            texts = embeddings.cut(texts, self.embedding_input_tokens, self.tiktoken_encoding())
        body = {"model": self.model, "input": texts, "encoding_format": "base64"}
        if "dimensions" in params:
            body["dimensions"] = params["dimensions"]
        if self._http is not None:
            headers, reply = await self._http.post(self._embeddings_url, body)
        else:
            import openai

            with self.stainless_errors(openai):
                raw = await self.client.embeddings.with_raw_response.create(**body)
                headers, reply = raw.headers, loads(raw.content)
        return embeddings.openai_reply(reply, len(texts), headers)

    @classmethod
    def prompt_cache_params(cls, prefix, model: str) -> dict:
        """prompt_cache_key, where the static prefix fills one of OpenAI's cache steps: rows sharing it land on the
        same cache machines (OpenAI caches prefixes by itself; the key keeps them together)."""
        if prefix is None or prefix.tokens < constants.OPENAI_CACHE_STEP:
            return {}
        return {"prompt_cache_key": prefix.digest(model)}

    @classmethod
    def output_params(cls, schema: OutputSchema, *, strict: bool, structured: str) -> dict:
        """response_format json_schema, strict schemas made as the SDK itself makes them; or json_object."""
        if structured == "json_object":
            return {"response_format": {"type": "json_object"}}
        if strict:
            from openai.lib._pydantic import _ensure_strict_json_schema, to_strict_json_schema

            if schema.model is not None:
                body = to_strict_json_schema(schema.model)
            else:
                body = copy.deepcopy(schema.json_schema)
                body = _ensure_strict_json_schema(body, path=(), root=body)
            if free := _free_form_objects(body):
                raise SchemaError(
                    f"{schema.name}: {', '.join(free)} can hold any keys, which OpenAI's strict structured outputs "
                    "cannot express; use a list of key/value models, or pass strict=False"
                )
        else:
            body = schema.json_schema
        name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.name)[:64]
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": body,
                                                                            "strict": strict}}}

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()  # the SDK client only configured this run: its idle client is shared
        elif self._client is not None:
            await self._client.close()
            self._client = None  # a next run (the same instance passed as model= again) opens a new one


def _with_calls(response: Response, body, request: Request) -> Response:
    """The response, with the tool calls it asks for where the request declared tools."""
    if "tools" in request.params:
        response.tool_calls = tool_wire.openai_turn(body)
    return response


def _with_hint(exc: ProviderError, request: Request) -> ProviderError:
    """A refused json_schema request's error, with the way out for servers that only have JSON mode."""
    text, asked = str(exc).lower(), request.params.get("response_format")
    if exc.retryable or not isinstance(asked, dict) or asked.get("type") != "json_schema" or not any(
            word in text for word in ("json_schema", "json_object", "response_format", "response format")):
        return exc
    hint = ' (this server may not support response_format json_schema: pass structured="json_object")'
    return ProviderError(f"{exc}{hint}", exc.status, retryable=False, headers=exc.headers, billed=exc.billed)


@functools.cache
def idle_client():
    """One HTTP client for every SDK client that only resolves configuration: making one costs tens of
    milliseconds (TLS set-up), more than a cached re-run of ten thousand rows."""
    import openai

    return openai.DefaultAsyncHttpxClient()


def _lean_config(base_url: str | None, options: dict) -> tuple[dict[str, str], str]:
    """(headers, base URL) as openai.AsyncOpenAI resolves them from these arguments and the environment."""
    org = options.get("organization") or os.environ.get("OPENAI_ORG_ID")
    project = options.get("project") or os.environ.get("OPENAI_PROJECT_ID")
    base = base_url or os.environ.get("OPENAI_BASE_URL") or constants.OPENAI_ENDPOINT
    headers = {"Accept": "application/json", "Content-Type": "application/json",
               "User-Agent": f"AsyncOpenAI/Python {_sdk_version()}"}
    headers.update({k: v for k, v in (("OpenAI-Organization", org), ("OpenAI-Project", project)) if v})
    headers.update({k: v for k, v in (options.get("default_headers") or {}).items() if isinstance(v, str)})
    return headers, base.rstrip("/") + "/"  # the SDK's base_url ends in one slash


@functools.cache
def _sdk_version() -> str:
    """The installed openai's version, read from its metadata (importing it costs ~0.5 s)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openai")
    except PackageNotFoundError:
        return "unknown"


def _free_form_objects(schema: dict, path: str = "") -> list[str]:
    """Paths of objects whose keys are free (dict fields): strict mode needs additionalProperties false."""
    found = []
    if isinstance(schema, dict):
        extra = schema.get("additionalProperties")
        if schema.get("type") == "object" and extra not in (None, False):
            found.append(path or "the top level")
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                found += [p for name, sub in value.items() for p in _free_form_objects(sub, f"{path}.{name}".lstrip("."))]
            elif key in ("$defs", "definitions") and isinstance(value, dict):
                found += [p for name, sub in value.items() for p in _free_form_objects(sub, name)]
            elif isinstance(value, (dict, list)) and key not in ("properties",):
                subs = value if isinstance(value, list) else [value]
                found += [p for sub in subs for p in _free_form_objects(sub, path)]
    return list(dict.fromkeys(found))
