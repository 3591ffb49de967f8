"""Gemini's explicit context caches (POST/GET/PATCH/DELETE /v1beta/cachedContents), as the google-genai SDK
speaks them, for the simulator.

A cached content holds a system instruction and contents; a generateContent request that names it
(`cachedContent`) is answered as if those came first, may not set its own system instruction (Google's 400),
and reports them in usageMetadata.cachedContentTokenCount (promptTokenCount counts them too). Creating one below
the model's minimum is refused as Google refuses it ("Cached content is too small"); an expired or deleted one
is a 404. Simulator.gemini_caches lists what was created and deleted, for tests.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..providers.prompt_cache import gemini_context_minimum
from .answers import tokens
from .gemini_generate import GEMINI, parts_text
from .openai_chat import BadRequest

CACHED = "llmframe_cached_content_tokens"  # the chat body's note of the tokens a named cache served


@dataclass
class Cached:
    """One cached content: its model, messages (chat-completions shape) and tokens, and when it expires."""

    name: str
    model: str
    messages: list[dict]
    tokens: int
    expires: float
    display_name: str = ""

    def as_json(self) -> dict:
        stamp = dt.datetime.fromtimestamp(self.expires, dt.timezone.utc).isoformat().replace("+00:00", "Z")
        return {"name": self.name, "model": f"models/{self.model}", "displayName": self.display_name,
                "expireTime": stamp, "usageMetadata": {"totalTokenCount": self.tokens}}


@dataclass
class GeminiCaches:
    """The simulator's cached contents; safe to use from the server's thread and the tests' thread."""

    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    _live: dict[str, Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=itertools.count)

    def live(self) -> list[str]:
        """The names of the cached contents neither deleted nor expired."""
        now = time.time()
        with self._lock:
            return [n for n, c in self._live.items() if c.expires > now]

    def routes(self) -> list[tuple[str, str, Any]]:
        out = []
        for version in ("v1beta", "v1"):
            out += [("POST", f"/{version}/cachedContents", self.create),
                    ("GET", f"/{version}/cachedContents/{{id}}", self.get),
                    ("PATCH", f"/{version}/cachedContents/{{id}}", self.update),
                    ("DELETE", f"/{version}/cachedContents/{{id}}", self.delete)]
        return out

    async def create(self, request: web.Request) -> web.Response:
        if not GEMINI.key(request):
            return GEMINI.unauthorized()
        raw = await request.json()
        model = str(raw.get("model", "")).removeprefix("models/")
        messages = []
        if raw.get("systemInstruction"):
            messages.append({"role": "system", "content": parts_text(raw["systemInstruction"])})
        for content in raw.get("contents") or []:
            role = "assistant" if content.get("role") == "model" else "user"
            messages.append({"role": role, "content": parts_text(content)})
        count = tokens("".join(m["content"] for m in messages))
        minimum = gemini_context_minimum(model)
        if count < minimum:
            return GEMINI.error(400, f"Cached content is too small. total_token_count={count}, "
                                     f"min_total_token_count={minimum}")
        name = f"cachedContents/sim{next(self._ids)}"
        cached = Cached(name, model, messages, count, time.time() + _seconds(raw.get("ttl", "3600s")),
                        str(raw.get("displayName", "")))
        with self._lock:
            self._live[name] = cached
            self.created.append(name)
        return web.json_response(cached.as_json())

    async def get(self, request: web.Request) -> web.Response:
        found = self.find(f"cachedContents/{request.match_info['id']}")
        return web.json_response(found.as_json()) if found else _missing()

    async def update(self, request: web.Request) -> web.Response:
        raw = await request.json()
        found = self.find(f"cachedContents/{request.match_info['id']}")
        if found is None:
            return _missing()
        if "ttl" in raw:
            found.expires = time.time() + _seconds(raw["ttl"])
        return web.json_response(found.as_json())

    async def delete(self, request: web.Request) -> web.Response:
        name = f"cachedContents/{request.match_info['id']}"
        with self._lock:
            found = self._live.pop(name, None)
            if found is not None:
                self.deleted.append(name)
        return web.json_response({}) if found else _missing()

    def find(self, name: str) -> Cached | None:
        """The live cached content of this name, or None (never made, deleted or expired)."""
        with self._lock:
            found = self._live.get(name)
        return found if found is not None and found.expires > time.time() else None

    def expand(self, raw: dict, chat: dict) -> None:
        """A generateContent body naming a cached content: its messages put first in the chat body, and their
        tokens noted (usage reports them); BadRequest where Google refuses the request."""
        name = raw.get("cachedContent")
        if not name:
            return
        if raw.get("systemInstruction") or raw.get("tools") or raw.get("toolConfig"):
            raise BadRequest("CachedContent can not be used with GenerateContent request setting "
                             "system_instruction, tools or tool_config.")
        found = self.find(str(name))
        if found is None:
            raise _Gone(f"CachedContent not found (or permission denied): {name}")
        if found.model != chat["model"]:
            raise BadRequest(f"Model used by GenerateContent request ({chat['model']}) and CachedContent "
                             f"({found.model}) has to be the same.")
        chat["messages"] = [*found.messages, *chat["messages"]]
        chat[CACHED] = found.tokens


def add_cache_routes(app: web.Application, current: Callable[[], GeminiCaches]) -> None:
    """Add the cachedContents routes to the simulator's application, each on the caches current() gives."""
    add = {"POST": app.router.add_post, "GET": app.router.add_get, "PATCH": app.router.add_patch,
           "DELETE": app.router.add_delete}
    for method, path, handler in current().routes():
        add[method](path, _on_current(current, handler.__name__))


def _on_current(current: Callable[[], GeminiCaches], name: str) -> Callable:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await getattr(current(), name)(request)

    return handle


class _Gone(BadRequest):
    """A request naming a cached content that is not there (Google answers 403 or 404)."""

    status = 404


def _seconds(ttl: Any) -> float:
    """A Duration as JSON carries it ("3600s") in seconds."""
    return float(str(ttl).rstrip("s") or 0)


def _missing() -> web.Response:
    return GEMINI.error(404, "CachedContent not found (or permission denied)")
