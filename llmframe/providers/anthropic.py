"""Anthropic's Messages API, on the official anthropic SDK (AsyncAnthropic)."""

from __future__ import annotations

import anthropic

from .. import constants
from ..plan.request import Request, Response, loads
from ..plan.structured import OutputSchema
from . import media, replies, tool_wire
from .base import Provider

# Anthropic's stop reasons in llmframe's vocabulary (OpenAI's), so reports and notes read the same.
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "refusal": "content_filter",
           "tool_use": "tool_calls"}


class AnthropicProvider(Provider):
    """model="anthropic:<name>"; base_url= or ANTHROPIC_BASE_URL for another endpoint.

    max_tokens is required by the API: without one, default_max_tokens is sent.
    """

    name = "anthropic"
    key_env = ("ANTHROPIC_API_KEY",)
    base_url_env = "ANTHROPIC_BASE_URL"
    extra = "anthropic"
    official_endpoints = (constants.ANTHROPIC_ENDPOINT,)
    ratelimit_headers = (constants.ANTHROPIC_RATELIMIT_HEADERS,)
    price_id = "anthropic"
    batch_adapter = "llmframe.batch.anthropic:AnthropicBatches"
    batch_limits = constants.ANTHROPIC_BATCH_LIMITS
    # No embedding API (embedding_limits stays None): Anthropic itself points to Voyage AI.
    embedding_alternatives = ("Voyage AI (Anthropic's recommendation) through an OpenAI-compatible server "
                              "(openai:<model> with base_url=), openai:text-embedding-3-small, "
                              "gemini:gemini-embedding-001, or a local model (transformers:<path>)")
    default_max_tokens = constants.ANTHROPIC_MAX_TOKENS
    media_urls = frozenset({(kind, scheme) for kind in ("image", "document") for scheme in ("http", "https")})
    media_max_bytes = constants.ANTHROPIC_MEDIA_MAX_BYTES
    tool_calls = True
    tool_params = staticmethod(tool_wire.anthropic_params)
    tool_messages = staticmethod(tool_wire.anthropic_messages)

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self._client = self.open_client()  # now: a bad provider_options= fails before anything is sent

    def open_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=constants.SDK_MAX_RETRIES,
            http_client=self.sdk_http_client(anthropic.DefaultAsyncHttpxClient),
            **self.options,
        )

    def resolved_url(self) -> str | None:
        return str(self.client.base_url)  # base_url=, else ANTHROPIC_BASE_URL, else the official endpoint

    @classmethod
    def output_params(cls, schema: OutputSchema, *, strict: bool, structured: str) -> dict:
        """Anthropic's JSON-schema output format: the answer text is the JSON object.

        Anthropic has no JSON mode: with structured="json_object" the schema in the prompt is all there is.
        """
        if structured == "json_object":
            return {}
        return {"output_config": {"format": {"type": "json_schema", "schema": schema.json_schema}}}

    @classmethod
    def prompt_cache_params(cls, prefix, model: str) -> dict:
        """A cache_control breakpoint at the end of the static prefix, where it is long enough for Anthropic to cache
        on this model and at least two requests share it (a cache write costs a quarter more than input)."""
        if prefix is None or prefix.rows < 2 or prefix.tokens < cache_minimum(model):
            return {}
        return {constants.ANTHROPIC_CACHE_PARAM: [prefix.messages, prefix.chars]}

    async def complete(self, request: Request) -> Response:
        messages = request.messages
        if media.has_media(messages):  # images and PDFs read and encoded now, as the request is sent
            messages = await media.messages_with(messages, media.anthropic_part)
        named, extra = message_params(messages, request.params)
        with self.stainless_errors(anthropic):
            raw = await self.client.messages.with_raw_response.create(
                model=self.model,
                max_tokens=named["max_tokens"],
                messages=named["messages"],
                system=named.get("system", anthropic.omit),
                stop_sequences=named.get("stop_sequences", anthropic.omit),
                output_config=named.get("output_config", anthropic.omit),
                extra_body=extra or None,  # temperature, top_p and anything from params= pass through as sent
            )
            # The body is read with every field's type checked: the SDK's models check none.
            body = loads(await raw.read())
        response = replies.anthropic(body, raw.headers, finish_reason)
        if "tools" in request.params:
            response.tool_calls = tool_wire.anthropic_turn(body)
        return response

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None  # a next run (the same instance passed as model= again) opens a new one


def finish_reason(stop_reason: str | None) -> str | None:
    """Anthropic's stop reason in llmframe's vocabulary."""
    return _FINISH.get(stop_reason, stop_reason)


def cache_minimum(model: str) -> int:
    """The fewest tokens a prefix needs for Anthropic to cache it on this model (its documented minimum)."""
    found = (n for part, n in constants.ANTHROPIC_CACHE_MINIMUMS if part in model)
    return next(found, constants.ANTHROPIC_CACHE_MINIMUM)


def message_params(messages: list[dict], params: dict) -> tuple[dict, dict]:
    """(the Messages API's own fields, the rest as sent) for OpenAI-style messages and llmframe params."""
    rest = dict(params)
    breakpoint_at = rest.pop(constants.ANTHROPIC_CACHE_PARAM, None)
    named: dict = {"max_tokens": rest.pop("max_tokens", AnthropicProvider.default_max_tokens)}
    system = "\n\n".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
    named["messages"] = [m for m in messages if m["role"] not in ("system", "developer")]
    if system:
        named["system"] = system
    stop = rest.pop("stop", None)
    if stop:
        named["stop_sequences"] = stop
    output_config = rest.pop("output_config", None)
    if output_config:
        named["output_config"] = output_config
    if breakpoint_at is not None:
        from .prompt_cache import anthropic_breakpoint

        anthropic_breakpoint(named, messages, *breakpoint_at)
    return named, rest
