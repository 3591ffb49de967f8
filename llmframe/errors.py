"""The exceptions llmframe raises.

LLMFrameError
├── ConfigError          unknown provider, missing key or extra, invalid parameter
│   └── CacheError       the cache directory cannot be used (not a directory, not writable)
│       ├── CacheDamaged the cache's database file is damaged
│       └── StoreUnavailable a shared store's server went away during a run
├── TemplateError        unknown column, bad placeholder, missing values when raising
├── SchemaError          a schema the provider cannot express, column clash
├── ProviderError        a request that failed (status and message kept)
├── BudgetExceeded       max_cost reached; finished answers kept
└── RunAborted           bad key, spent quota, circuit breaker, a wait past max_wait, or errors="raise"; finished answers kept

Per-row failures are data (an error column), not exceptions, unless the user asks to raise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from . import constants

__all__ = [
    "LLMFrameError",
    "ConfigError",
    "CacheError",
    "CacheDamaged",
    "StoreUnavailable",
    "TemplateError",
    "SchemaError",
    "ProviderError",
    "BudgetExceeded",
    "RunAborted",
    "redact",
    "quota_spent",
]


class LLMFrameError(Exception):
    """Base class of every llmframe exception."""


class ConfigError(LLMFrameError, ValueError):
    """A model string, parameter, key or extra is wrong or missing."""


class CacheError(ConfigError):
    """The cache directory cannot be used: a file, not writable, or its database unreadable."""


class CacheDamaged(CacheError):
    """The cache's database file is damaged: run with cache=False, move it aside, or reset it."""


class StoreUnavailable(CacheError):
    """A shared store stopped answering during a run: answers are still returned, and not stored."""


class TemplateError(LLMFrameError, ValueError):
    """A template does not fit the frame it is applied to."""


class SchemaError(LLMFrameError, ValueError):
    """An output schema that cannot be used."""


class ProviderError(LLMFrameError):
    """A request the provider did not answer: its HTTP status (None if no reply) and reply headers.

    connected is False when no connection was made (refused, unresolvable, connect timed out): the
    request never reached a server, so the report does not count it as sent. body: the error reply's
    text, read only to tell a 5xx that blames the request (never retried) from one that blames the
    server. billed: (input, output, cached input, cache-write) tokens of a reply that came back but could not be
    used (a malformed one): the provider bills them all the same. quota: the account's quota or
    credit is spent (billing, not rate): no retry or wait helps.
    """

    def __init__(self, message: str, status: int | None = None, *, retryable: bool | None = None,
                 headers: Mapping[str, str] | None = None, connected: bool = True, body: str = "",
                 billed: tuple[int, ...] = (0, 0, 0, 0), quota: bool = False):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.connected = connected
        self.billed = billed
        self.quota = quota
        if retryable is None:
            retryable = not quota and (status in constants.RETRY_STATUSES or (
                status is not None and status >= 500 and not blames_the_request(f"{message} {body}")))
        self.retryable = retryable


_BLAME = re.compile("|".join(re.escape(marker) for marker in constants.INVALID_REQUEST_MARKERS))


def blames_the_request(text: str) -> bool:
    """True when an error text says the request itself is invalid or unsupported: sending it again cannot help."""
    return _BLAME.search(text[: constants.ERROR_BODY_CHARS].lower().replace("_", " ")) is not None


class _Stopped(LLMFrameError):
    """A run that ended early or with failures: its report, and its result with every finished answer."""

    def __init__(self, message: str, report: dict | None = None, result: object = None):
        super().__init__(message)
        self.report = report
        self.result = result


class BudgetExceeded(_Stopped):
    """The run reached its cost cap (max_cost); finished answers are in .result and in the cache."""


class RunAborted(_Stopped):
    """The run stopped or ended with failures; finished answers are in the cache (and .result when it finished)."""


def quota_spent(status: int | None, body: object) -> bool:
    """Whether an error reply (its status and body, raw or parsed) says the account's quota or credit is spent.

    OpenAI: a 429 of type/code insufficient_quota. Anthropic: a 402 billing_error, or a 429 whose
    error.details.error_code is enforced_spend_limit_reached (the monthly spend cap).
    """
    if status == 402:
        return True
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    if not isinstance(body, dict):
        return False
    error = body["error"] if isinstance(body.get("error"), dict) else body  # the SDKs hand over either
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    return any(isinstance(v, str) and v in constants.QUOTA_ERROR_CODES
               for v in (error.get("code"), error.get("type"), details.get("error_code")))


# Provider messages may quote a key, whole or masked ("Incorrect API key provided: sk-ab***yz").
_KEY_LIKE = re.compile(r"\b(sk|sk-proj|sk-ant|AIza)[-_A-Za-z0-9*]{6,}")


def redact(text: str, *secrets: str | None) -> str:
    """Remove API keys, and anything shaped like one, from a message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEY_LIKE.sub("***", text)
