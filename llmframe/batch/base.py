"""The interface every provider's batch API sits behind; adapters know nothing of pandas."""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from .. import constants
from ..engine.ratelimit import retry_after
from ..errors import ConfigError, ProviderError, redact
from ..providers.base import Provider
from ..plan.request import Response

LineBuilder = Callable[[str, list[dict]], str]  # (custom id, messages) -> one request as a JSON line
T = TypeVar("T")


@dataclass(slots=True)
class Status:
    """A provider batch as the last poll saw it."""

    state: str  # the provider's own word
    ended: bool  # finished, failed, expired or cancelled: nothing more will change
    done: int  # requests finished so far (where the provider reports it; else 0 until the end)
    error: str | None = None  # why the whole batch failed, if it did


class Adapter(ABC):
    """Create, poll, collect and cancel one provider's batches through its official SDK."""

    name: ClassVar[str]
    # What an HTTP 404 to creating or listing batches means here.
    not_found: ClassVar[str] = ("this server has no batch API (vLLM, llama.cpp and most OpenAI-compatible servers "
                                "serve only the online one); use mode='online'")

    def __init__(self, provider: Provider):
        self.provider = provider
        self.client = provider.client  # the SDK client the provider configured (key, endpoint, timeouts)

    @abstractmethod
    def line_builder(self, params: dict) -> LineBuilder:
        """A function that renders one request of this run as the JSON line the provider expects."""

    @abstractmethod
    async def create(self, uid: str, lines: list[str]) -> str:
        """Create a batch of these request lines, tagged uid where the API allows; returns its id."""

    async def find(self, uid: str, since: float) -> str | None:
        """The id of a batch tagged uid created after `since` (Unix time), for a run that died between creating
        a batch and recording its id; None where the API cannot tag batches (then the chunk is created again)."""
        return None

    @abstractmethod
    async def poll(self, batch_id: str) -> Status:
        """Where the batch stands."""

    @abstractmethod
    async def results(self, batch_id: str) -> dict[str, Response]:
        """Every answer or per-request error that came back, by custom id (call once the batch ended)."""

    @abstractmethod
    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to stop the batch; what finished stays collectable."""

    async def aclose(self) -> None:
        await self.provider.aclose()

    @contextmanager
    def creating(self) -> Iterator[None]:
        """Around creating or listing batches, where an HTTP 404 can only mean that this server has no batch API
        at all: a ConfigError naming the endpoint that answered it."""
        try:
            yield
        except ProviderError as exc:
            if exc.status != 404:
                raise
            raise self.no_batch_api(exc) from None

    def no_batch_api(self, error: ProviderError) -> ConfigError:
        """The error that says this server has no batch API, naming the request that answered 404."""
        exc = error.__context__  # the SDK's own error, which keeps the request: ProviderError was raised handling it
        response = getattr(exc, "response", None)
        try:  # the SDKs keep the request on the error or on its response (httpx's raises when it has none)
            request = getattr(exc, "request", None) or getattr(response, "request", None) or response
        except RuntimeError:
            request = response
        method, url = getattr(request, "method", None), getattr(request, "url", None)
        where = f"{method} {url}" if url is not None else f"the {self.name} batch endpoint at {self.provider.base_url}"
        said = str(error).removeprefix("HTTP 404: ")
        said = "" if said.startswith(("Error code: 404", "404 ")) else f" ({said})"  # the SDKs' own filler
        return ConfigError(redact(f"{where} answered HTTP 404{said}: {self.not_found}", *self.provider.secrets))


async def patiently(call: Callable[[], Awaitable[T]], *,
                    took_effect: Callable[[], Awaitable[T | None]] | None = None) -> T:
    """A batch API call, asked again after a passing failure (5xx, 429, no connection) with growing waits.

    took_effect() is asked before each new try whether the failed call happened after all (a batch created
    whose reply was lost), so that a retry never creates a second, billed batch where the API can tell.
    """
    for wait in (*constants.BATCH_CALL_RETRY_SECONDS, None):
        try:
            return await call()
        except ProviderError as exc:
            if wait is None or not exc.retryable:
                raise
            advised = retry_after(exc.headers) or 0.0
            await asyncio.sleep(min(max(wait, advised), constants.MAX_WAIT_SECONDS))
        if took_effect is not None:
            try:
                found = await took_effect()
            except ProviderError:
                found = None  # cannot tell yet: the call is asked again
            if found is not None:
                return found
    raise AssertionError("unreachable")  # the last try returns or raises


def object_lines(render: Callable[[str, list[dict]], dict]) -> LineBuilder:
    """A LineBuilder of render(custom id, messages) -> the line's object, as compact UTF-8 JSON."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    return lambda key, messages: dumps(render(key, messages))


def read_line(parse: Callable[[], Response]) -> Response:
    """One result line's answer; a field of the wrong type is that row's failure, never the run's (a batch
    cannot ask again), with the tokens its usage bills where that could be read."""
    try:
        response = parse()
    except ProviderError as exc:
        response = Response(error=str(exc), input_tokens=exc.billed[0], output_tokens=exc.billed[1],
                            cached_input_tokens=exc.billed[2], cache_write_tokens=exc.billed[3])
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        response = Response.failure(f"malformed response: {type(exc).__name__}: {exc}")
    response.batch = True
    return response


def json_lines(data: bytes | str) -> list[dict]:
    """The objects of a JSON Lines document; one parse for the whole text when it has no blank lines."""
    text = data.decode() if isinstance(data, bytes) else data
    text = text.strip()
    if not text:
        return []
    try:
        return json.loads("[" + text.replace("\n", ",") + "]")
    except ValueError:  # blank lines or \r\n endings: parse line by line
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def error_text(error, status: int | None = None) -> str:
    """A readable one-line error from the shapes providers use ({"message"}, {"error": {...}}, a string), after
    "HTTP <status>: " where the status is known; a numeric code is that status, said once."""
    text = str(error)
    if isinstance(error, dict):
        inner = error.get("error")
        if isinstance(inner, dict):
            return error_text(inner, status)
        message = error.get("message") or json.dumps(error)
        code = error.get("code") or error.get("type") or error.get("status")
        if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):  # vLLM's and Gemini's code
            status = status or int(code)
            code = error.get("type") or error.get("status")
        text = f"{code}: {message}" if code else str(message)
    return f"HTTP {status}: {text}" if status else text
