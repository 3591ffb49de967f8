"""Anthropic's Messages API (POST /v1/messages), as a dialect of the simulator.

The route parses the body into OpenAI's chat-completions shape, so the answer function, the faults,
the token counts and the log work as on every route (see Simulator._serve); the dialect only spells
the key, the answer, the errors and the rate-limit headers as Anthropic does.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web

from .faults import FaultState
from .media import anthropic_content, with_media
from .openai_chat import MODEL, BadRequest, Dialect, bearer_key, json_schema_format, with_optional


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



_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


# Anthropic's rate-limit headers of a kind of limit ("requests", "tokens"): limit, remaining, reset.
_HEADERS = ("anthropic-ratelimit-{}-limit", "anthropic-ratelimit-{}-remaining", "anthropic-ratelimit-{}-reset")


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
        return request.headers.get("x-api-key", "").strip() or bearer_key(request)

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
        if json.dumps(raw).count('"cache_control"') > 4:  # as Anthropic refuses more breakpoints
            raise BadRequest("A maximum of 4 blocks with cache_control may be provided.")
        messages = []
        if raw.get("system"):
            messages.append({"role": "system", "content": _blocks_text(raw["system"])})
        for message in raw["messages"]:
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise BadRequest("messages: each message needs a role of 'user' or 'assistant'")
            content = message.get("content")
            messages.append({"role": message["role"], "content": with_media(_blocks_text(content),
                                                                            anthropic_content(content))})
        chat = {"model": raw.get("model", MODEL), "messages": messages, "max_tokens": raw["max_tokens"]}
        stop = raw.get("stop_sequences")
        with_optional(chat, temperature=raw.get("temperature"), top_p=raw.get("top_p"), stop=stop)
        tool = _forced_tool(raw)
        output = raw.get("output_config") if isinstance(raw.get("output_config"), dict) else {}
        fmt = output.get("format") or raw.get("output_format")  # output_format: the earlier beta spelling
        if tool is not None:
            name = tool["name"]
            chat["tools"] = [{"type": "function", "function": {"name": name, "parameters": tool.get("input_schema")}}]
            chat["tool_choice"] = {"type": "function", "function": {"name": name}}
            chat["response_format"] = json_schema_format(name, tool.get("input_schema"))
        elif isinstance(fmt, dict):
            if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
                raise BadRequest("output_config.format: expected {'type': 'json_schema', 'schema': {...}}")
            chat["response_format"] = json_schema_format("output", fmt["schema"])
        return chat

    def rate_headers(self, state: FaultState, key: str, now: float) -> dict[str, str]:
        return state.headers(key, now, _HEADERS, _rfc3339)

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


ANTHROPIC = AnthropicDialect()
ROUTES = [("/v1/messages", ANTHROPIC)]
