"""OpenAI's chat-completions API, the simulator's own shape: the Dialect every vendor's route builds on.

A route's handler is Simulator._serve(request, dialect): it checks the key, parses the body into
OpenAI's chat-completions shape (which the answer function, the faults and the token counts work
on), logs it, and renders the answer, errors and rate-limit headers in the vendor's own shape.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .faults import QUOTA_MESSAGE, FaultState, retry_headers

MODEL = "sim-model"

# (type, code) as the real API reports them; anything else gets a generic type.
_ERROR_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


# The reasoning tokens the simulator bills per request, by effort: small, so tests stay fast, but not zero.
REASONING_TOKENS = {"none": 0, "minimal": 4, "low": 8, "medium": 16, "high": 32, "xhigh": 64}


def reasoning_tokens(raw: Any) -> int:
    """The reasoning tokens billed for a request's effort (Responses' reasoning.effort, or chat's reasoning_effort)."""
    if not isinstance(raw, dict):
        return 0
    effort = raw["reasoning"].get("effort") if isinstance(raw.get("reasoning"), dict) else None
    effort = effort or raw.get("reasoning_effort")
    return REASONING_TOKENS.get(effort, 0) if isinstance(effort, str) else 0


class BadRequest(Exception):
    """Raised by a Dialect's parse for a body the API would refuse with a 400."""


def bearer_key(request: web.Request) -> str:
    """Return the bearer token, or "" if there is none; any non-empty one is accepted."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    """Build an OpenAI-style error response, which the openai SDK maps to its exception classes."""
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def format_problem(body: dict) -> str | None:
    """Why the request's response_format would be refused by the API, or None if it is fine."""
    if "response_format" not in body or body["response_format"] is None:
        return None
    response_format = body["response_format"]
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        return "Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'."
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return "Missing required parameter: 'response_format.json_schema'."
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        return "Missing required parameter: 'response_format.json_schema.name'."
    if "schema" in spec and not isinstance(spec["schema"], dict):
        return "Invalid type for 'response_format.json_schema.schema': expected an object."
    return None


def json_schema_format(name: str, schema: Any) -> dict:
    """An OpenAI response_format asking for an instance of a JSON schema."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema if isinstance(schema, dict) else {}}}


def with_optional(chat: dict, **values: Any) -> dict:
    """Add the given keys to a chat body, leaving out those whose value is None."""
    chat.update({k: v for k, v in values.items() if v is not None})
    return chat


class Dialect:
    """How one vendor's API spells a request and its answer; this base speaks OpenAI's chat completions."""

    embeds = False  # an embedding route (testing.embeddings): answered with vectors, not the answer function

    def key(self, request: web.Request) -> str:
        """The request's API key, or "" if it has none."""
        return bearer_key(request)

    def error(self, status: int, message: str, headers: dict | None = None) -> web.Response:
        """An error response in the vendor's shape."""
        return error_response(status, message, headers)

    def unauthorized(self) -> web.Response:
        """The answer to a request without a key."""
        return self.error(401, "missing or empty API key")

    def parse(self, request: web.Request, raw: Any) -> dict:
        """The raw body in OpenAI's chat-completions shape; raise BadRequest for one the API refuses."""
        if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
            raise BadRequest("'messages' must be a list")
        problem = format_problem(raw)
        if problem is not None:
            raise BadRequest(problem)
        if any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in raw["messages"]):
            from .media import openai_content  # images and PDFs: checked, and normalised for the answer

            return {**raw, "messages": [{**m, "content": openai_content(m.get("content"))} if isinstance(m, dict)
                                        else m for m in raw["messages"]]}
        return raw

    def rate_headers(self, state: FaultState, key: str, now: float) -> dict[str, str]:
        """The rate-limit headers sent with every answer, for the limits configured."""
        return state.headers(key, now)

    def retry_headers(self, seconds: float) -> dict[str, str]:
        """Headers that advise a client to wait `seconds` before retrying."""
        return retry_headers(seconds)

    def quota_error(self, headers: dict) -> web.Response:
        """The 429 of an account whose quota or credit is spent, as OpenAI sends it."""
        body = {"error": {"message": QUOTA_MESSAGE, "type": "insufficient_quota", "param": None,
                          "code": "insufficient_quota"}}
        return web.json_response(body, status=429, headers=headers)

    def reply(
        self, number: int, raw: dict, chat: dict, text: str, finish: str, usage: tuple[int, int], empty: bool
    ) -> dict:
        """The success body: `text` is the answer, `finish` "stop" or "length", `usage` (prompt, completion)
        tokens; `empty` asks for a reply without any candidate answer (the empty_choices fault)."""
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
            "logprobs": None,
        }
        prompt_tokens, completion_tokens = usage
        thought = reasoning_tokens(raw)
        completion_tokens += thought
        return {
            "id": f"chatcmpl-sim-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.get("model", MODEL),
            "choices": [] if empty else [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                **({"completion_tokens_details": {"reasoning_tokens": thought}} if thought else {}),
            },
        }


OPENAI = Dialect()
ROUTES = [("/v1/chat/completions", OPENAI)]  # (path, dialect) of each POST route the simulator serves
