"""Mistral's chat completions, as a dialect of the simulator, under /mistral (point base_url= at mistral_base_url).

Mistral's API takes and returns OpenAI's chat shapes on the same path (/v1/chat/completions), so the
simulator serves it under its own prefix: the dialect spells errors as Mistral does ({"object": "error",
"message", "type", "code"}) and its per-minute rate-limit headers (x-ratelimit-{limit,remaining}-req-minute
and -tokens-minute, no reset header).
"""

from __future__ import annotations

from aiohttp import web

from .faults import FaultState
from .openai_chat import Dialect

PREFIX = "/mistral"
_KINDS = {"requests": "req", "tokens": "tokens"}


class MistralDialect(Dialect):
    """Mistral's chat completions."""

    def error(self, status: int, message: str, headers: dict | None = None) -> web.Response:
        kind = {401: "authentication_error", 429: "rate_limited"}.get(status, "invalid_request_error")
        body = {"object": "error", "message": message, "type": kind, "param": None, "code": str(status)}
        return web.json_response(body, status=status, headers=headers)

    def rate_headers(self, state: FaultState, key: str, now: float) -> dict[str, str]:
        out = {}
        for kind, (limit, remaining, _until) in state.levels(key, now).items():
            out[f"x-ratelimit-limit-{_KINDS[kind]}-minute"] = str(limit)
            out[f"x-ratelimit-remaining-{_KINDS[kind]}-minute"] = str(remaining)
        return out


MISTRAL = MistralDialect()
ROUTES = [(PREFIX + "/v1/chat/completions", MISTRAL)]
