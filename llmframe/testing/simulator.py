"""The simulator's core: its log and counts, and the one request pipeline (key, parse, log, rate limits,
faults, answer) that every protocol's route shares, served by the loopback server of server.py.

The protocols live beside it: openai_chat (the Dialect base, OpenAI's chat completions),
anthropic_messages, gemini_generate, and the batch APIs (batches, and openai_batches,
anthropic_batches, gemini_batches on it); answers makes the answers, faults draws the faults.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .. import constants

from . import (anthropic_messages, azure, embeddings, gemini_generate, logprobs, mistral, openai_chat,
               openai_responses, packed, tool_mode)
from .answers import (completion_limit, default_answer, digest_answer, fit, last_user_text, prompt_tokens, spoil,
                      structured_format, tokens)
from .batches import BatchService
from .faults import HTML_502, Faults, FaultState, refusal, retype
from .openai_chat import MODEL, BadRequest, Dialect, bearer_key, error_response
from .prompt_cache import PromptCache, split
from .gemini_caches import GeminiCaches, add_cache_routes
from .server import LoopbackServer, cut, drip

__all__ = ["API_KEY", "LoggedRequest", "SimulatedError", "Simulator", "default_answer", "digest_answer"]

API_KEY = "sim-key"


class SimulatedError(Exception):
    """Raised by an answer function to make the server reply with an HTTP error."""

    def __init__(self, status: int, message: str = "simulated error", headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class LoggedRequest:
    """One chat-completion request as the server received it (credentials are never kept)."""

    time: float  # arrival, time.monotonic()
    path: str
    body: dict
    status: int = 0  # the HTTP status answered; 0 while in flight, or for a hang or reset
    # rpm, tpm, refused_format, injected, hang, reset, malformed, html, empty_choices, invalid_json,
    # schema_violation, null_finish, retyped; None if none
    fault: str | None = None
    # The body in OpenAI's chat-completions shape, as the answer function saw it; for the
    # /v1/chat/completions route it is `body` itself, for the Anthropic and Gemini routes a translation.
    chat: dict | None = None
    # The client's end of the connection, "host:port": one per connection. A client sends a connection's next
    # request only once it has read the reply before, so a later request on it shows this reply was received.
    peer: str | None = None
    # (prompt, completion) tokens the server billed: those of every answer it made, whether or not the
    # client could read it (a reset, a truncated body); (0, 0) for an error reply.
    billed: tuple[int, int] = (0, 0)
    # (read, written) tokens of billed[0] that its prompt cache served or stored (prompt_cache.split)
    prompt_cache: tuple[int, int] = (0, 0)


@dataclass
class _Call:
    """One request's dialect, fault state, API key and arrival: what its errors and headers are made from."""

    dialect: Dialect
    state: FaultState
    key: str
    now: float

    def limits(self) -> dict[str, str]:
        """The rate-limit headers, reckoned at arrival."""
        return self.dialect.rate_headers(self.state, self.key, self.now)

    def error(self, status: int, message: str, headers: dict | None = None) -> web.Response:
        """An error response in the dialect, with the rate-limit headers and `headers`."""
        return self.dialect.error(status, message, {**self.limits(), **(headers or {})})


def _refusal(call: _Call, body: dict, cost: int) -> tuple[web.Response, str] | None:
    """The 429 of a key over its limits (for `cost` tokens), or the 500 of a refused format, with its fault."""
    refused, wait = call.state.admit(call.key, cost, call.now)
    if refused:
        retry = call.dialect.retry_headers(wait) if math.isfinite(wait) else {}  # too large ever to fit: no wait helps
        message = f"Rate limit reached ({refused} per API key)" if retry else f"Request too large for {refused}"
        return call.error(429, message, retry), refused
    structured = structured_format(body)
    refused_format = refusal(structured and structured[0], call.state.faults.refused_formats)
    if refused_format is not None:
        return call.error(500, refused_format), "refused_format"
    return None


async def _send(request: web.Request, reply: dict, limits: dict, fault: str | None,
                drip_seconds: float) -> web.StreamResponse:
    """Send a success body, as the body faults (reset, drip, malformed) spoil it."""
    data = json.dumps(reply).encode()
    headers = {"Content-Type": "application/json", **limits}
    if fault == "reset":
        return await cut(request, data, headers)
    if fault == "drip":
        return await drip(request, data, headers, drip_seconds)
    if fault == "malformed":
        data = data[: len(data) // 2]  # a truncated document, as from a broken proxy
    return web.Response(body=data, headers=headers)


class Simulator(LoopbackServer):
    """OpenAI-compatible chat-completions server on a background thread, for tests and benchmarks.

    It also speaks Anthropic's Messages API (POST /v1/messages; point the anthropic SDK at
    anthropic_base_url) and Gemini's generateContent (POST /v1beta/models/{model}:generateContent and
    /v1/...; point google-genai's HttpOptions(base_url=...) at gemini_base_url), with the same answers,
    faults, log and counts: the answer to the same conversation is the same on every route.

    `answer` is called with the request body in OpenAI's chat-completions shape on every route, so
    one answer function serves all three: {"model", "messages": [{"role", "content": str}], and as
    the request has them "max_tokens", "temperature", "top_p", "stop", "seed", "response_format"}.
    An Anthropic system prompt or Gemini systemInstruction becomes a leading "system" message, a
    Gemini "model" turn an "assistant" one; Anthropic's output_config.format, a tool that tool_choice
    forces, and Gemini's responseMimeType "application/json" with responseJsonSchema or responseSchema
    (translated to JSON Schema) become a "response_format" json_schema (json_object without a schema).
    The log keeps each body as sent (LoggedRequest.body) with its route (path) and that translation
    (LoggedRequest.chat).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        answer: Callable[[dict], str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log: bool = True,
        faults: Faults | None = None,
        tools: tool_mode.ToolMode | None = None,
    ):
        super().__init__(host, port)
        self.latency = latency
        # Called on the server's event loop, after the latency: it must not block.
        self.answer = answer or default_answer
        self.faults = faults or Faults()  # read per request, so it can be replaced while serving
        self.tool_mode = tools  # a model that calls these tools first (testing.tool_mode), on every protocol
        self._defaults = (self.latency, self.answer, self.faults, self.tool_mode)
        self._keep_log = log  # off for long benchmarks, where the log would grow without bound
        self._log: list[LoggedRequest] = []
        self._count = 0
        self._statuses: Counter[int] = Counter()
        self._fault_counts: Counter[str] = Counter()
        self._fault_state: FaultState | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)  # never reset, so ids stay unique for the server's life
        self.batches = BatchService(self)  # the batch APIs: settings, and the batches created
        self.prompt_cache = PromptCache()  # prefixes seen: cached tokens in each protocol's usage (enabled=False: off)
        self.gemini_caches = GeminiCaches()  # Gemini's explicit cached contents (testing/gemini_caches.py)
        # (chat body, answer) -> the probability each answer token's logprob gives, where logprobs=true asks;
        # None: testing.logprobs.default_confidence
        self.confidence: Callable[[dict, str], float] | None = None
        # Embedding routes refuse a request with an input past this many tokens (None: no limit), as OpenAI's
        # 8,192-token models do; tests lower it to make one bad row.
        self.embedding_input_tokens: int | None = embeddings.INPUT_TOKENS

    # --- public API -------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Base URL to give the openai SDK, e.g. http://127.0.0.1:8000/v1."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL to give the anthropic SDK (it appends /v1/messages), e.g. http://127.0.0.1:8000."""
        return self.base_url.removesuffix("/v1")

    @property
    def azure_endpoint(self) -> str:
        """The endpoint to give Azure OpenAI (AZURE_OPENAI_ENDPOINT, base_url= of model="azure:..."): the SDK
        appends /openai/deployments/{deployment}/... and ?api-version=."""
        return self.base_url.removesuffix("/v1")

    @property
    def mistral_base_url(self) -> str:
        """The server URL to give Mistral (base_url= of model="mistral:...", the SDK's server_url): it appends
        /v1/chat/completions, /v1/files, /v1/batch/jobs."""
        return self.base_url.removesuffix("/v1") + mistral.PREFIX

    @property
    def gemini_base_url(self) -> str:
        """Base URL to give google-genai's HttpOptions(base_url=...): it appends /{api_version}/models/..."""
        return self.base_url.removesuffix("/v1")

    @property
    def api_key(self) -> str:
        """A dummy key; the server accepts any non-empty bearer token."""
        return API_KEY

    @property
    def requests(self) -> list[LoggedRequest]:
        """A copy of the log of chat-completion requests, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def count(self) -> int:
        """Number of chat-completion requests received since start or reset."""
        with self._lock:
            return self._count

    def next_id(self) -> int:
        """A number for a reply's id, unique for the server's life."""
        return next(self._ids)

    def stats(self) -> dict:
        """The request count, and the answers counted per HTTP status and per fault."""
        with self._lock:
            statuses = {str(status): n for status, n in sorted(self._statuses.items())}
            return {"count": self._count, "statuses": statuses, "faults": dict(self._fault_counts)}

    def attempts_by_prompt(self) -> dict[str, list[LoggedRequest]]:
        """The logged requests grouped by the text of their last user message, to count retries per row."""
        attempts: dict[str, list[LoggedRequest]] = {}
        for entry in self.requests:
            attempts.setdefault(last_user_text(entry.chat or entry.body), []).append(entry)
        return attempts

    def reset(self) -> None:
        """Clear the log, counts and rate-limit buckets; restore the constructor's latency, answer and faults."""
        with self._lock:
            self._log.clear()
            self._count = 0
            self._statuses.clear()
            self._fault_counts.clear()
        self.latency, self.answer, self.faults, self.tool_mode = self._defaults
        self.embedding_input_tokens = embeddings.INPUT_TOKENS
        self._fault_state = None
        self.batches.reset()
        self.prompt_cache = PromptCache()
        self.gemini_caches = GeminiCaches()
        self.confidence = None

    # --- server -----------------------------------------------------------

    def _app(self) -> web.Application:
        """Build the aiohttp application with the simulator's routes."""
        app = web.Application(client_max_size=constants.SIM_MAX_BODY_BYTES)
        for path, dialect in (*openai_chat.ROUTES, *anthropic_messages.ROUTES, *gemini_generate.ROUTES,
                              *embeddings.ROUTES, *openai_responses.ROUTES, *azure.ROUTES,
                              *mistral.ROUTES):
            app.router.add_post(path, self._route(dialect))
        self.batches.add_routes(app)
        app["llmframe_files"] = self.batches.file  # Gemini fileData parts: the uploaded files' bytes
        add_cache_routes(app, lambda: self.gemini_caches)  # the caches reset() last made
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_sim/stats", self._stats)
        return app

    def _route(self, dialect: Dialect) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The handler of a completion route in a dialect."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, dialect)

        return handle

    async def _serve(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        """Handle a completion request on any route, in the route's dialect."""
        if not dialect.key(request):
            return dialect.unauthorized()
        try:
            raw = json.loads(await request.read())
        except ValueError:
            return dialect.error(400, "request body is not valid JSON")
        try:
            chat = dialect.parse(request, raw)
            if dialect is gemini_generate.GEMINI:
                self.gemini_caches.expand(raw, chat)  # a named cached content's messages go first
        except BadRequest as exc:
            return dialect.error(getattr(exc, "status", 400), str(exc))
        # Logged on arrival, before any wait, so tests can observe requests in flight.
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        entry = LoggedRequest(time.monotonic(), request.path, raw, chat=chat,
                              peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None)
        with self._lock:
            self._count += 1
            if self._keep_log:
                self._log.append(entry)
        response, fault = await self._respond(request, dialect, raw, chat, entry)
        self._settle(entry, 0 if fault == "reset" else response.status, fault)
        return response

    async def _respond(
        self, request: web.Request, dialect: Dialect, raw: dict, body: dict, entry: LoggedRequest
    ) -> tuple[web.StreamResponse, str | None]:
        """Answer a logged request under the faults in force; return the response and its fault.

        `raw` is the body as sent, `body` its chat-completions shape, which the answer is made from.
        """
        state = self.fault_state()
        # Limits are reckoned at arrival, so a fresh key's headers do not depend on the server's speed.
        call = _Call(dialect, state, dialect.key(request), entry.time)
        prompt, limit = prompt_tokens(body), completion_limit(body)
        refused = _refusal(call, body, prompt + (limit or 0))
        if refused is not None:
            return refused
        fault = state.draw()
        # HTTP errors answer at once, as a gateway would; the other faults take an answer's latency.
        if isinstance(fault, int):
            after = state.faults.retry_after
            retry = dialect.retry_headers(after) if fault in (429, 503) and after is not None else {}
            return call.error(fault, f"injected {fault} error", retry), "injected"
        if fault == "quota":
            return dialect.quota_error(call.limits()), fault
        if fault == "hang":
            self._settle(entry, 0, "hang")
            await self.hang()
        latency = state.latency(self.latency)
        if latency > 0:
            await asyncio.sleep(latency)
        if fault == "html":
            return web.Response(status=502, text=HTML_502, content_type="text/html", headers=call.limits()), fault
        if dialect.embeds:
            return await self._embed(request, call, raw, body, entry, fault)
        calls, final = tool_mode.respond(self.tool_mode, dialect, raw, body) if self.tool_mode else ([], None)
        if calls:
            reply, entry.billed = tool_mode.call_reply(dialect, self.next_id(), raw, body, calls, prompt)
            return await _send(request, reply, call.limits(), None, 0), None
        answered = self._answer(call, body, fault) if final is None else (final, fault)
        if isinstance(answered, web.Response):
            return answered, None
        text, fault = answered
        text, truncated = fit(text, limit)
        finish = "length" if truncated else None if fault == "null_finish" else "stop"
        completion = tokens(text)
        if limit is None:  # admitted on the prompt alone, so bill the completion now
            state.charge(call.key, completion, call.now)
        usage = entry.billed = (prompt, completion)
        reply = dialect.reply(self.next_id(), raw, body, text, finish, usage, fault == "empty_choices")
        reply = self.prompt_cache.apply(dialect, raw, body, reply)
        entry.prompt_cache = split(reply)
        reply = logprobs.attach(reply, raw, body, text, self.confidence)
        if fault == "retyped":
            reply = retype(reply, state.faults.retyped)
        return await _send(request, reply, call.limits(), fault, state.faults.drip_seconds), fault

    async def _embed(self, request: web.Request, call: _Call, raw: dict, body: dict, entry: LoggedRequest,
                     fault: str | None) -> tuple[web.StreamResponse, str | None]:
        """An embedding request's vectors (the chat answer faults do not apply to it), or its 400."""
        vectors, problem = embeddings.embedded(body, self.embedding_input_tokens)
        if problem is not None:
            return call.error(400, problem), None
        entry.billed = (prompt_tokens(body), 0)
        reply = call.dialect.embedding_reply(raw, body, vectors, entry.billed[0])
        fault = fault if fault in ("reset", "drip", "malformed") else None
        return await _send(request, reply, call.limits(), fault, call.state.faults.drip_seconds), fault

    def fault_state(self) -> FaultState:
        """The state of the faults in force (made anew when the faults are changed)."""
        state = self._fault_state
        if state is None or state.faults is not self.faults:
            state = self._fault_state = FaultState(self.faults)
        return state

    def _answer(self, call: _Call, body: dict, fault: str | None) -> tuple[str, str | None] | web.Response:
        """The answer function's text, spoilt by an answer fault, and the fault that stands; or an error response."""
        try:
            found = packed.item_schema(body)
            text = self.answer(body) if found is None else packed.answer(body, self.answer, call.state, found)
            if not isinstance(text, str):
                raise TypeError(f"answer returned {type(text).__name__}, not str")
        except SimulatedError as exc:
            return call.error(exc.status, exc.message, exc.headers)
        except Exception as exc:
            return call.error(500, f"answer function failed: {exc!r}")
        if fault in ("invalid_json", "schema_violation"):
            try:
                return spoil(fault, text, body)
            except Exception as exc:
                return call.error(500, f"simulator could not build a {fault} answer: {exc!r}")
        return text, fault

    def _settle(self, entry: LoggedRequest, status: int, fault: str | None) -> None:
        """Record how a request was answered, in its log entry and in the stats."""
        entry.status, entry.fault = status, fault
        with self._lock:
            self._statuses[status] += 1
            if fault is not None:
                self._fault_counts[fault] += 1

    async def _models(self, request: web.Request) -> web.Response:
        """Handle GET /v1/models."""
        if not bearer_key(request):
            return error_response(401, "missing or empty API key")
        model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "llmframe"}
        return web.json_response({"object": "list", "data": [model]})

    async def _stats(self, request: web.Request) -> web.Response:
        """Handle GET /_sim/stats, so another process can read the counts."""
        return web.json_response(self.stats())
