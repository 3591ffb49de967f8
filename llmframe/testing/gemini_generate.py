"""Gemini's generateContent (POST /v1beta/models/{model}:generateContent, and /v1/...), as a dialect of the simulator.

The route parses the body into OpenAI's chat-completions shape, so the answer function, the faults,
the token counts and the log work as on every route (see Simulator._serve); the dialect only spells
the key, the answer and the errors as Google does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .faults import QUOTA_MESSAGE, FaultState
from .media import gemini_content, with_media
from .openai_chat import MODEL, BadRequest, Dialect, json_schema_format, with_optional


def parts_text(content: Any) -> str:
    """The text of a Gemini Content ({"parts": [{"text": ...}, ...]})."""
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return ""
    return "".join(str(p.get("text", "")) for p in content["parts"] if isinstance(p, dict))


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
        inline: list[int] = []  # the inline media's bytes: the request's limit is on their sum
        system = raw.get("systemInstruction") or raw.get("system_instruction")
        if system:
            messages.append({"role": "system", "content": parts_text(system)})
        for content in contents:
            if not isinstance(content, dict):
                raise BadRequest("* GenerateContentRequest.contents: each content must be an object")
            role = content.get("role") or "user"
            if role not in ("user", "model"):
                raise BadRequest(f"Please use a valid role: user, model (not {role!r}).")
            app = getattr(request, "app", None)
            media = gemini_content(content.get("parts"), inline, app.get("llmframe_files") if app is not None else None)
            messages.append({"role": "user" if role == "user" else "assistant",
                             "content": with_media(parts_text(content), media)})
        config = raw.get("generationConfig") or {}
        if not isinstance(config, dict):
            raise BadRequest("generationConfig must be an object")
        chat = {"model": request.match_info.get("model", MODEL), "messages": messages}
        with_optional(
            chat,
            max_tokens=config.get("maxOutputTokens"),
            temperature=config.get("temperature"),
            top_p=config.get("topP"),
            seed=config.get("seed"),
            stop=config.get("stopSequences"),
        )
        if config.get("responseMimeType") == "application/json":
            if isinstance(config.get("responseJsonSchema"), dict):
                chat["response_format"] = json_schema_format("output", config["responseJsonSchema"])
            elif isinstance(config.get("responseSchema"), dict):
                schema = openapi_to_json_schema(config["responseSchema"])
                chat["response_format"] = json_schema_format("output", schema)
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


GEMINI = GeminiDialect()
ROUTES = [(f"/{version}/models/{{model:[^/:]+}}:generateContent", GEMINI) for version in ("v1beta", "v1")]
