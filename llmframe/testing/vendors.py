"""Anthropic's Messages API and Gemini's generateContent, as dialects of the simulator.

Each route parses its vendor's body into OpenAI's chat-completions shape, so the answer function,
the faults, the token counts and the log work the same on every route (see Simulator._serve); the
dialect only spells the key, the answer, the errors and the rate-limit headers as the vendor does.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .faults import QUOTA_MESSAGE, FaultState
from .simulator import MODEL, BadRequest, Dialect, _api_key

# --- shared helpers --------------------------------------------------------------------------


def _blocks_text(content: Any) -> str:
    """The text of an Anthropic content (a string or a list of blocks), tool results included."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            parts.append(_blocks_text(block.get("content")))
    return "".join(parts)


def _parts_text(content: Any) -> str:
    """The text of a Gemini Content ({"parts": [{"text": ...}, ...]})."""
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return ""
    return "".join(str(p.get("text", "")) for p in content["parts"] if isinstance(p, dict))


def _json_schema_format(name: str, schema: Any) -> dict:
    """An OpenAI response_format asking for an instance of a JSON schema."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema if isinstance(schema, dict) else {}}}


def _optional(chat: dict, **values: Any) -> dict:
    """Add the given keys to a chat body, leaving out those whose value is None."""
    chat.update({k: v for k, v in values.items() if v is not None})
    return chat


# --- Anthropic --------------------------------------------------------------------------------

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _rfc3339(seconds_from_now: float) -> str:
    """The wall-clock time `seconds_from_now` ahead, as Anthropic writes it in its reset headers."""
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=max(0.0, seconds_from_now))
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _forced_tool(raw: dict) -> dict | None:
    """The tool a request's tool_choice forces ("tool" by name, or "any": the first), or None."""
    choice, tools = raw.get("tool_choice"), raw.get("tools")
    if not isinstance(choice, dict) or not isinstance(tools, list):
        return None
    tools = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if choice.get("type") == "tool":
        return next((t for t in tools if t["name"] == choice.get("name")), None)
    if choice.get("type") == "any" and tools:
        return tools[0]
    return None


class AnthropicDialect(Dialect):
    """POST /v1/messages, as the anthropic SDK speaks it."""

    def key(self, request: web.Request) -> str:
        # The Messages API takes x-api-key; the anthropic SDK 2.x sends its api_key as a bearer token.
        return request.headers.get("x-api-key", "").strip() or _api_key(request)

    def error(self, status: int, message: str, headers: dict | None = None) -> web.Response:
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return web.json_response(body, status=status, headers=headers)

    def quota_error(self, headers: dict) -> web.Response:
        # The monthly spend cap: a rate_limit_error told apart only by its details, and without retry-after.
        message = "You have reached your API usage limits: your organization has crossed its monthly API usage threshold."
        body = {"type": "error", "error": {"type": "rate_limit_error", "message": message,
                                           "details": {"error_code": "enforced_spend_limit_reached"}}}
        return web.json_response(body, status=429, headers=headers)

    def parse(self, request: web.Request, raw: Any) -> dict:
        if not isinstance(raw, dict):
            raise BadRequest("the request body must be a JSON object")
        if not isinstance(raw.get("max_tokens"), int) or isinstance(raw.get("max_tokens"), bool):
            raise BadRequest("max_tokens: Field required")
        if not isinstance(raw.get("messages"), list):
            raise BadRequest("messages: Field required")
        messages = []
        if raw.get("system"):
            messages.append({"role": "system", "content": _blocks_text(raw["system"])})
        for message in raw["messages"]:
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise BadRequest("messages: each message needs a role of 'user' or 'assistant'")
            messages.append({"role": message["role"], "content": _blocks_text(message.get("content"))})
        chat = {"model": raw.get("model", MODEL), "messages": messages, "max_tokens": raw["max_tokens"]}
        stop = raw.get("stop_sequences")
        _optional(chat, temperature=raw.get("temperature"), top_p=raw.get("top_p"), stop=stop)
        tool = _forced_tool(raw)
        output = raw.get("output_config") if isinstance(raw.get("output_config"), dict) else {}
        fmt = output.get("format") or raw.get("output_format")  # output_format: the earlier beta spelling
        if tool is not None:
            name = tool["name"]
            chat["tools"] = [{"type": "function", "function": {"name": name, "parameters": tool.get("input_schema")}}]
            chat["tool_choice"] = {"type": "function", "function": {"name": name}}
            chat["response_format"] = _json_schema_format(name, tool.get("input_schema"))
        elif isinstance(fmt, dict):
            if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
                raise BadRequest("output_config.format: expected {'type': 'json_schema', 'schema': {...}}")
            chat["response_format"] = _json_schema_format("output", fmt["schema"])
        return chat

    def rate_headers(self, state: FaultState, key: str, now: float) -> dict[str, str]:
        out = {}
        for kind, (limit, remaining, reset) in state.levels(key, now).items():
            out[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{kind}-remaining"] = str(remaining)
            out[f"anthropic-ratelimit-{kind}-reset"] = _rfc3339(reset)
        return out

    def reply(
        self, number: int, raw: dict, chat: dict, text: str, finish: str, usage: tuple[int, int], empty: bool
    ) -> dict:
        stop_reason = "max_tokens" if finish == "length" else "end_turn"
        block: dict = {"type": "text", "text": text}
        tool = _forced_tool(raw)
        if tool is not None and finish != "length":
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, dict):  # else (a spoilt answer) it goes out as text
                block = {"type": "tool_use", "id": f"toolu_sim_{number}", "name": tool["name"], "input": value}
                stop_reason = "tool_use"
        return {
            "id": f"msg_sim_{number}",
            "type": "message",
            "role": "assistant",
            "model": chat["model"],
            "content": [] if empty else [block],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        }


# --- Gemini -----------------------------------------------------------------------------------

_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Keywords of Gemini's OpenAPI-subset Schema whose values are int64, which JSON carries as strings.
_INT64_KEYWORDS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def openapi_to_json_schema(schema: Any) -> Any:
    """Translate Gemini's responseSchema (an OpenAPI subset: "OBJECT", "nullable", ...) into JSON Schema."""
    if isinstance(schema, list):
        return [openapi_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: openapi_to_json_schema(s) for name, s in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf"):
            out[key] = openapi_to_json_schema(value)
        elif key in _INT64_KEYWORDS and isinstance(value, str) and value.isdigit():
            out[key] = int(value)
        elif key not in ("nullable", "propertyOrdering", "property_ordering", "example"):
            out[key] = value
    if schema.get("nullable") is True:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


class GeminiDialect(Dialect):
    """POST /v1beta/models/{model}:generateContent (and /v1/...), as the google-genai SDK speaks it."""

    def key(self, request: web.Request) -> str:
        return (request.headers.get("x-goog-api-key", "") or request.query.get("key", "")).strip()

    def unauthorized(self) -> web.Response:
        # What Google answers a call without any key; a wrong key would get 400 API_KEY_INVALID.
        message = (
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        )
        return self.error(403, message)

    def error(self, status: int, message: str, headers: dict | None = None) -> web.Response:
        status_name = _GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        error: dict = {"code": status, "message": message, "status": status_name}
        wait = (headers or {}).get("retry-after-ms")
        if status == 429 and wait is not None:
            delay = int(wait) / 1000
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay:g}s"}]
        return web.json_response({"error": error}, status=status, headers=headers)

    def quota_error(self, headers: dict) -> web.Response:
        # Google's quota 429 reads like its rate-limit 429: RESOURCE_EXHAUSTED, the same message.
        return self.error(429, QUOTA_MESSAGE, headers)

    def parse(self, request: web.Request, raw: Any) -> dict:
        if not isinstance(raw, dict):
            raise BadRequest("Invalid JSON payload received: the body must be an object.")
        contents = raw.get("contents")
        if not isinstance(contents, list) or not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
        messages = []
        system = raw.get("systemInstruction") or raw.get("system_instruction")
        if system:
            messages.append({"role": "system", "content": _parts_text(system)})
        for content in contents:
            if not isinstance(content, dict):
                raise BadRequest("* GenerateContentRequest.contents: each content must be an object")
            role = content.get("role") or "user"
            if role not in ("user", "model"):
                raise BadRequest(f"Please use a valid role: user, model (not {role!r}).")
            messages.append({"role": "user" if role == "user" else "assistant", "content": _parts_text(content)})
        config = raw.get("generationConfig") or {}
        if not isinstance(config, dict):
            raise BadRequest("generationConfig must be an object")
        chat = {"model": request.match_info.get("model", MODEL), "messages": messages}
        _optional(
            chat,
            max_tokens=config.get("maxOutputTokens"),
            temperature=config.get("temperature"),
            top_p=config.get("topP"),
            seed=config.get("seed"),
            stop=config.get("stopSequences"),
        )
        if config.get("responseMimeType") == "application/json":
            if isinstance(config.get("responseJsonSchema"), dict):
                chat["response_format"] = _json_schema_format("output", config["responseJsonSchema"])
            elif isinstance(config.get("responseSchema"), dict):
                schema = openapi_to_json_schema(config["responseSchema"])
                chat["response_format"] = _json_schema_format("output", schema)
            else:
                chat["response_format"] = {"type": "json_object"}
        elif config.get("responseSchema") or config.get("responseJsonSchema"):
            raise BadRequest("responseSchema needs responseMimeType 'application/json'")
        return chat

    def rate_headers(self, state: FaultState, key: str, now: float) -> dict[str, str]:
        return {}  # Gemini sends no rate-limit headers; a 429 carries RetryInfo (and here retry-after)

    def reply(
        self, number: int, raw: dict, chat: dict, text: str, finish: str, usage: tuple[int, int], empty: bool
    ) -> dict:
        candidate = {
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "MAX_TOKENS" if finish == "length" else "STOP",
            "index": 0,
        }
        prompt_tokens, completion_tokens = usage
        return {
            "candidates": [] if empty else [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": completion_tokens,
                "totalTokenCount": prompt_tokens + completion_tokens,
            },
            "modelVersion": chat["model"],
            "responseId": f"sim-{number}",
        }


ANTHROPIC = AnthropicDialect()
GEMINI = GeminiDialect()


def add_vendor_routes(
    app: web.Application, serve: Callable[[web.Request, Dialect], Awaitable[web.StreamResponse]]
) -> None:
    """Add the Anthropic and Gemini routes to a simulator's application, each served by `serve`."""

    async def messages(request: web.Request) -> web.StreamResponse:
        return await serve(request, ANTHROPIC)

    async def generate(request: web.Request) -> web.StreamResponse:
        return await serve(request, GEMINI)

    app.router.add_post("/v1/messages", messages)
    for version in ("v1beta", "v1"):
        app.router.add_post(f"/{version}/models/{{model:[^/:]+}}:generateContent", generate)
