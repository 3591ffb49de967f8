"""A lean JSON-over-HTTP client for the hot path: one aiohttp session per run, errors as ProviderError.

The official SDKs spend about 2 ms of CPU per request building and validating typed objects; on two
cores that caps a run near 500 requests/s whatever the server could do. Providers keep their SDK for
configuration, authentication and uncommon endpoints, and send the one request they make per row here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from .. import constants
from ..errors import ProviderError, quota_spent, redact
from ..plan.request import loads
from .base import never_connected


class JSONClient:
    """POSTs JSON and returns (headers, parsed body); the session is made on the loop that uses it."""

    def __init__(self, headers: Mapping[str, str], *, max_connections: int, timeout: float,
                 secrets: tuple[str, ...]):
        self._headers = dict(headers)
        self._max_connections = max_connections
        # connect=None: waiting for a free pooled connection is queueing, not a connect failure. sock_read
        # catches a silent server early; Provider.answer bounds the whole attempt.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=constants.CONNECT_TIMEOUT_SECONDS, sock_read=timeout
        )
        self._secrets = secrets
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300)
        return aiohttp.ClientSession(connector=connector, headers=self._headers, timeout=self._timeout,
                                     json_serialize=json.dumps)

    async def post(self, url: str, body: dict) -> tuple[Mapping[str, str], Any]:
        """The reply's headers and JSON body; ProviderError for an HTTP error, a broken reply or no reply."""
        session = self._session or self._set_session()
        try:
            async with session.post(url, data=_dumps(body)) as reply:
                raw = await reply.read()
                headers = reply.headers
                status = reply.status
                reason = reply.reason
        except asyncio.TimeoutError as exc:
            raise ProviderError("request timed out", retryable=True, connected=not never_connected(exc)) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(redact(f"connection error: {type(exc).__name__}: {exc}", *self._secrets),
                                retryable=True, connected=not never_connected(exc)) from None
        if status >= 400:
            raise ProviderError(redact(f"HTTP {status}: {_error_message(raw, reason)}", *self._secrets),
                                status=status, headers=headers, quota=quota_spent(status, raw),
                                body=raw[: constants.ERROR_BODY_CHARS].decode(errors="replace"))
        try:
            return headers, loads(raw)
        except ValueError as exc:
            raise ProviderError(f"malformed response: {type(exc).__name__}", retryable=True, headers=headers) from None

    def _set_session(self) -> aiohttp.ClientSession:
        self._session = self._open()
        return self._session

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _dumps(body: dict) -> bytes:
    """The request body as UTF-8 JSON: orjson where it can (a third of json's time), json for what it refuses."""
    try:
        return orjson.dumps(body)
    except TypeError:  # an integer past 64 bits, a subclass orjson does not know: let json decide
        return json.dumps(body, ensure_ascii=False).encode()


def _error_message(raw: bytes, reason: str | None) -> str:
    """The provider's own message from an error body, else the HTTP reason (an HTML page says nothing useful)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return reason or "error"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return (body.get("message") if isinstance(body, dict) else None) or reason or "error"
