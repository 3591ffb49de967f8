"""In-process loopback simulator of the OpenAI chat-completions API."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

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

    time: float
    path: str
    body: dict


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


def default_answer(body: dict) -> str:
    """Answer with digest_answer of the last user message's text."""
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return digest_answer(_text(users[-1].get("content")) if users else "")


def _tokens(text: str) -> int:
    """Approximate a token count deterministically (about 4 characters per token)."""
    return max(1, len(text) // 4)


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    """Build an OpenAI-style error response, which the openai SDK maps to its exception classes."""
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _authorized(request: web.Request) -> bool:
    """Accept any non-empty bearer token, as a real key must never be needed to test."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


class Simulator:
    """OpenAI-compatible chat-completions server on a background thread, for tests and benchmarks."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        answer: Callable[[dict], str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log: bool = True,
    ):
        self.latency = latency
        # Called on the server's event loop, after the latency: it must not block.
        self.answer = answer or default_answer
        self.host = host
        self.port = port
        self._defaults = (self.latency, self.answer)
        self._keep_log = log  # off for long benchmarks, where the log would grow without bound
        self._log: list[LoggedRequest] = []
        self._count = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)  # never reset, so ids stay unique for the server's life
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # --- public API -------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Base URL to give the openai SDK, e.g. http://127.0.0.1:8000/v1."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

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

    def reset(self) -> None:
        """Clear the request log and restore the constructor's latency and answer."""
        with self._lock:
            self._log.clear()
            self._count = 0
        self.latency, self.answer = self._defaults

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
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_sim/stats", self._stats)
        return app

    async def _listen(self) -> web.AppRunner:
        """Start listening on the current loop and record the actual port."""
        # access_log=None: per-request log formatting costs a large share of throughput.
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=5.0)
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

    async def _chat(self, request: web.Request) -> web.Response:
        """Handle POST /v1/chat/completions."""
        if not _authorized(request):
            return _error(401, "missing or empty API key")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list")
        # Logged before the latency sleep so tests can observe requests in flight.
        with self._lock:
            self._count += 1
            if self._keep_log:
                self._log.append(LoggedRequest(time.monotonic(), request.path, body))
        latency = self.latency
        if latency > 0:
            await asyncio.sleep(latency)
        try:
            text = self.answer(body)
            if not isinstance(text, str):
                raise TypeError(f"answer returned {type(text).__name__}, not str")
        except SimulatedError as exc:
            return _error(exc.status, exc.message, exc.headers)
        except Exception as exc:
            return _error(500, f"answer function failed: {exc!r}")
        finish = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and _tokens(text) > limit:
            text, finish = text[: limit * 4], "length"
        prompt_tokens = _tokens("".join(_text(m.get("content")) for m in body["messages"] if isinstance(m, dict)))
        completion_tokens = _tokens(text)
        return web.json_response(
            {
                "id": f"chatcmpl-sim-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        """Handle GET /v1/models."""
        if not _authorized(request):
            return _error(401, "missing or empty API key")
        model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "llmframe"}
        return web.json_response({"object": "list", "data": [model]})

    async def _stats(self, request: web.Request) -> web.Response:
        """Handle GET /_sim/stats, so another process can read the request count."""
        return web.json_response({"count": self.count})
