"""The interface every provider's batch API sits behind; adapters know nothing of pandas."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..providers.base import Provider
from ..request import Response

LineBuilder = Callable[[str, list[dict]], str]  # (custom id, messages) -> one request as a JSON line


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

    def __init__(self, provider: Provider):
        self.provider = provider
        self.client = provider._client  # the SDK client the provider configured (key, endpoint, timeouts)

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


def error_text(error) -> str:
    """A readable one-line error from the shapes providers use ({"message"}, {"error": {...}}, a string)."""
    if isinstance(error, dict):
        inner = error.get("error")
        if isinstance(inner, dict):
            return error_text(inner)
        message = error.get("message") or json.dumps(error)
        code = error.get("code") or error.get("type") or error.get("status")
        return f"{code}: {message}" if code else str(message)
    return str(error)
