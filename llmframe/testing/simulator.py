"""In-process loopback simulator of the OpenAI chat-completions API."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .faults import HTML_502, QUOTA_MESSAGE, Faults, FaultState, refusal, retry_headers, retype
from .schema_answers import instance, invalid_json, violation

API_KEY = "sim-key"
MODEL = "sim-model"

# (type, code) as the real API reports them; anything else gets a generic type.
_ERROR_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


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


def digest_answer(prompt: str) -> str:
    """Return the deterministic default answer for a prompt."""
    return "answer-" + hashlib.sha256(prompt.encode()).hexdigest()[:16]


def _text(content: Any) -> str:
    """Return the text of a message content: a string, a list of content parts, or None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _last_user_text(body: dict) -> str:
    """Return the text of the last user message, or "" if there is none."""
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def structured_format(body: dict) -> tuple[str, dict | None] | None:
    """("json_schema", schema), ("json_object", None), or None for a request that asks for free text."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json_object", None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return "json_schema", schema if isinstance(schema, dict) else {}
    return None


def _format_problem(body: dict) -> str | None:
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


def default_answer(body: dict) -> str:
    """Answer digest_answer of the last user message's text, or JSON when the request asks for it.

    With response_format json_schema, the answer is an instance of the schema that the whole
    conversation chooses (see llmframe.testing.schema_answers.instance), so a follow-up turn that
    asks for a correction gets a new answer; with json_object, it is {"answer": digest_answer(text)}.
    """
    prompt = _last_user_text(body)
    structured = structured_format(body)
    if structured is None:
        return digest_answer(prompt)
    kind, schema = structured
    if kind == "json_object":
        return json.dumps({"answer": digest_answer(prompt)})
    return json.dumps(instance(schema, _conversation_text(body)))


def _conversation_text(body: dict) -> str:
    """Every message's text, in order: what seeds a structured answer."""
    return "\n".join(_text(m.get("content")) for m in body.get("messages", []) if isinstance(m, dict))


def _spoil(fault: str, text: str, body: dict) -> tuple[str, str | None]:
    """Apply an answer fault to a structured request's answer; a request it does not apply to keeps both."""
    structured = structured_format(body)
    if structured is None:
        return text, None
    prompt = _last_user_text(body)
    if fault == "invalid_json":
        return invalid_json(text, prompt), fault
    kind, schema = structured
    if kind != "json_schema":
        return text, None  # no schema to break
    try:
        value = json.loads(text)
    except ValueError:
        value = instance(schema, prompt)
    try:
        return json.dumps(violation(schema, prompt, value)), fault
    except ValueError:  # the schema allows any JSON
        return text, None


def _tokens(text: str) -> int:
    """Approximate a token count deterministically (about 4 characters per token)."""
    return max(1, len(text) // 4)


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    """Build an OpenAI-style error response, which the openai SDK maps to its exception classes."""
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _api_key(request: web.Request) -> str:
    """Return the bearer token, or "" if there is none; any non-empty one is accepted."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class BadRequest(Exception):
    """Raised by a Dialect's parse for a body the API would refuse with a 400."""


class Dialect:
    """How one vendor's API spells a request and its answer; the simulator's logic is shared by all of them.

    A route's handler is Simulator._serve(request, dialect): it checks the key, parses the body into
    OpenAI's chat-completions shape (which the answer function, the faults and the token counts work
    on), logs it, and renders the answer, errors and rate-limit headers in the vendor's own shape.
    """

    def key(self, request: web.Request) -> str:
        """The request's API key, or "" if it has none."""
        return _api_key(request)

    def error(self, status: int, message: str, headers: dict | None = None) -> web.Response:
        """An error response in the vendor's shape."""
        return _error(status, message, headers)

    def unauthorized(self) -> web.Response:
        """The answer to a request without a key."""
        return self.error(401, "missing or empty API key")

    def parse(self, request: web.Request, raw: Any) -> dict:
        """The raw body in OpenAI's chat-completions shape; raise BadRequest for one the API refuses."""
        if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
            raise BadRequest("'messages' must be a list")
        problem = _format_problem(raw)
        if problem is not None:
            raise BadRequest(problem)
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
            },
        }


OPENAI = Dialect()


async def _drip(request: web.Request, data: bytes, headers: dict, seconds: float) -> web.StreamResponse:
    """Send the status line and the headers, then the body one byte every `seconds`."""
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)
    await response.prepare(request)
    try:
        for i in range(len(data)):
            await response.write(data[i : i + 1])
            await asyncio.sleep(seconds)
        await response.write_eof()
    except ConnectionError:  # the client gave up waiting: what a drip test expects
        pass
    return response


async def _cut(request: web.Request, data: bytes, headers: dict) -> web.StreamResponse:
    """Send the status line, the headers and half the body, then drop the connection."""
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)  # so the client knows the body came short
    await response.prepare(request)
    await response.write(data[: len(data) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


class Simulator:
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
    ):
        self.latency = latency
        # Called on the server's event loop, after the latency: it must not block.
        self.answer = answer or default_answer
        self.faults = faults or Faults()  # read per request, so it can be replaced while serving
        self.host = host
        self.port = port
        self._defaults = (self.latency, self.answer, self.faults)
        self._keep_log = log  # off for long benchmarks, where the log would grow without bound
        self._log: list[LoggedRequest] = []
        self._count = 0
        self._statuses: Counter[int] = Counter()
        self._fault_counts: Counter[str] = Counter()
        self._fault_state: FaultState | None = None
        self._hanging: set[asyncio.Task] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)  # never reset, so ids stay unique for the server's life
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        from .batches import BatchService  # imported here: it builds on this module

        self.batches = BatchService(self)  # the batch APIs: settings, and the batches created

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

    def stats(self) -> dict:
        """The request count, and the answers counted per HTTP status and per fault."""
        with self._lock:
            statuses = {str(status): n for status, n in sorted(self._statuses.items())}
            return {"count": self._count, "statuses": statuses, "faults": dict(self._fault_counts)}

    def attempts_by_prompt(self) -> dict[str, list[LoggedRequest]]:
        """The logged requests grouped by the text of their last user message, to count retries per row."""
        attempts: dict[str, list[LoggedRequest]] = {}
        for entry in self.requests:
            attempts.setdefault(_last_user_text(entry.chat or entry.body), []).append(entry)
        return attempts

    def reset(self) -> None:
        """Clear the log, counts and rate-limit buckets; restore the constructor's latency, answer and faults."""
        with self._lock:
            self._log.clear()
            self._count = 0
            self._statuses.clear()
            self._fault_counts.clear()
        self.latency, self.answer, self.faults = self._defaults
        self._fault_state = None
        self.batches.reset()

    def start(self, timeout: float = 10.0) -> Simulator:
        """Start serving on a background thread; return once the port is listening."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="llm-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"simulator did not start within {timeout} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down gracefully and join its thread; safe to call twice."""
        thread, loop, runner = self._thread, self._loop, self._runner
        if thread is None or loop is None or runner is None:
            return
        self._thread = self._loop = self._runner = None
        try:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- server -----------------------------------------------------------

    def _app(self) -> web.Application:
        """Build the aiohttp application with the simulator's routes."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        from .vendors import add_vendor_routes  # imported here: it builds on this module

        add_vendor_routes(app, self._serve)
        self.batches.add_routes(app)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_sim/stats", self._stats)
        app.on_shutdown.append(self._end_hangs)
        return app

    async def _listen(self) -> web.AppRunner:
        """Start listening on the current loop and record the actual port."""
        # access_log=None: per-request log formatting costs a large share of throughput.
        # handler_cancellation: a client that gives up ends its handler, so hangs do not pile up.
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=5.0, handler_cancellation=True)
        await runner.setup()
        # A large backlog keeps benchmark bursts of thousands of connections from being refused.
        site = web.TCPSite(runner, self.host, self.port, backlog=4096)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        return runner

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        """Thread body: own an event loop, serve until stop() stops the loop."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._runner = loop.run_until_complete(self._listen())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        """Handle POST /v1/chat/completions."""
        return await self._serve(request, OPENAI)

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
        except BadRequest as exc:
            return dialect.error(400, str(exc))
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
        state = self._fault_state
        if state is None or state.faults is not self.faults:
            state = self._fault_state = FaultState(self.faults)
        key = dialect.key(request)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        prompt_tokens = _tokens("".join(_text(m.get("content")) for m in messages))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        limit = limit if isinstance(limit, int) else None
        # Limits are reckoned at arrival, so a fresh key's headers do not depend on the server's speed.
        now = entry.time

        def limits() -> dict[str, str]:
            return dialect.rate_headers(state, key, now)

        refused, wait = state.admit(key, prompt_tokens + (limit or 0), now)
        # HTTP errors answer at once, as a gateway would; the other faults take an answer's latency.
        if refused:
            retry = dialect.retry_headers(wait) if math.isfinite(wait) else {}  # too large ever to fit: no wait helps
            message = f"Rate limit reached ({refused} per API key)" if retry else f"Request too large for {refused}"
            return dialect.error(429, message, {**limits(), **retry}), refused
        structured = structured_format(body)
        refused_format = refusal(structured and structured[0], state.faults.refused_formats)
        if refused_format is not None:
            return dialect.error(500, refused_format, limits()), "refused_format"
        fault = state.draw()
        if isinstance(fault, int):
            after = state.faults.retry_after
            retry = dialect.retry_headers(after) if fault in (429, 503) and after is not None else {}
            return dialect.error(fault, f"injected {fault} error", {**limits(), **retry}), "injected"
        if fault == "quota":
            return dialect.quota_error(limits()), fault
        if fault == "hang":
            self._settle(entry, 0, "hang")
            await self._hang()
        latency = state.latency(self.latency)
        if latency > 0:
            await asyncio.sleep(latency)
        if fault == "html":
            return web.Response(status=502, text=HTML_502, content_type="text/html", headers=limits()), fault
        try:
            text = self.answer(body)
            if not isinstance(text, str):
                raise TypeError(f"answer returned {type(text).__name__}, not str")
        except SimulatedError as exc:
            return dialect.error(exc.status, exc.message, {**limits(), **exc.headers}), None
        except Exception as exc:
            return dialect.error(500, f"answer function failed: {exc!r}", limits()), None
        if fault in ("invalid_json", "schema_violation"):
            try:
                text, fault = _spoil(fault, text, body)
            except Exception as exc:
                message = f"simulator could not build a {fault} answer: {exc!r}"
                return dialect.error(500, message, limits()), None
        finish = None if fault == "null_finish" else "stop"
        if limit is not None and _tokens(text) > limit:
            text, finish = text[: limit * 4], "length"
        completion_tokens = _tokens(text)
        if limit is None:  # admitted on the prompt alone, so bill the completion now
            state.charge(key, completion_tokens, now)
        usage = entry.billed = (prompt_tokens, completion_tokens)
        reply = dialect.reply(next(self._ids), raw, body, text, finish, usage, fault == "empty_choices")
        if fault == "retyped":
            reply = retype(reply, state.faults.retyped)
        data = json.dumps(reply).encode()
        headers = {"Content-Type": "application/json", **limits()}
        if fault == "reset":
            return await _cut(request, data, headers), fault
        if fault == "drip":
            return await _drip(request, data, headers, state.faults.drip_seconds), fault
        if fault == "malformed":
            data = data[: len(data) // 2]  # a truncated document, as from a broken proxy
        return web.Response(body=data, headers=headers), fault

    def _settle(self, entry: LoggedRequest, status: int, fault: str | None) -> None:
        """Record how a request was answered, in its log entry and in the stats."""
        entry.status, entry.fault = status, fault
        with self._lock:
            self._statuses[status] += 1
            if fault is not None:
                self._fault_counts[fault] += 1

    async def _hang(self) -> None:
        """Never answer: wait until the client disconnects or the server stops, either of which cancels us."""
        task = asyncio.current_task()
        self._hanging.add(task)
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self._hanging.discard(task)

    async def _end_hangs(self, app: web.Application) -> None:
        """Cancel hanging requests, which would otherwise hold up shutdown for its whole timeout."""
        for task in list(self._hanging):
            task.cancel()

    async def _models(self, request: web.Request) -> web.Response:
        """Handle GET /v1/models."""
        if not _api_key(request):
            return _error(401, "missing or empty API key")
        model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "llmframe"}
        return web.json_response({"object": "list", "data": [model]})

    async def _stats(self, request: web.Request) -> web.Response:
        """Handle GET /_sim/stats, so another process can read the counts."""
        return web.json_response(self.stats())
