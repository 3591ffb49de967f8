"""The one interface every provider implements; providers know nothing of pandas."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import os
import socket
import threading
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from .. import constants
from ..errors import ConfigError, ProviderError, SchemaError, quota_spent, redact
from ..plan.request import Embedded, Request, Response

if TYPE_CHECKING:
    from ..plan.prefix import StaticPrefix
    from ..plan.structured import OutputSchema

_deadline = getattr(asyncio, "timeout", None)  # Python 3.11+


Batch = list[tuple[int, Response]]  # a local model's answers to part of a group: (position in the group, answer)


class Provider(ABC):
    """Turns a Request into a Response for one model; raises ProviderError when it cannot.

    A provider declares what the rest of llmframe needs to know of it here, as class attributes and
    methods, so that adding one is this class (and its batch adapter) and nothing else: see the README's
    "Writing a provider plugin". The structured-output format is output_params (and strict_outputs).
    """

    name: ClassVar[str]  # the prefix of model= ("openai" in "openai:gpt-4o-mini"), part of every cache key
    key_env: ClassVar[tuple[str, ...]] = ()  # environment variables holding the API key, in order
    key_hint: ClassVar[str] = ""  # said after a missing key's fix, e.g. that local servers take any key
    extra: ClassVar[str | None] = None  # the pip extra that installs this provider's SDK
    strict_outputs: ClassVar[bool] = False  # output_params(strict=False) asks for something else than strict=True
    # The provider's own endpoints, normalised, and the domain all of them are under: answers from these are
    # keyed without an endpoint (see endpoint), answers from any other server (a proxy, a simulator) with it.
    official_endpoints: ClassVar[tuple[str, ...]] = ()
    official_domain: ClassVar[str | None] = None
    base_url_env: ClassVar[str | None] = None  # the SDK's environment variable naming another endpoint
    # The (limit, remaining, reset) header names of each rate-limit dialect the provider's servers speak,
    # "{kind}" standing for "requests" or "tokens": the limiter learns the server's limits from them.
    ratelimit_headers: ClassVar[tuple[tuple[str, str, str], ...]] = (constants.OPENAI_RATELIMIT_HEADERS,)
    price_id: ClassVar[str | None] = None  # the provider's id in genai-prices; None: priced only by prices=
    batch_embeddings: ClassVar[bool] = False  # its batch API takes embedding requests (OpenAI's /v1/embeddings)
    batch_adapter: ClassVar[str | None] = None  # "module:Class" of its native batch API's Adapter, if it has one
    batch_limits: ClassVar[tuple[int, int]] = constants.BATCH_DEFAULT_LIMITS  # one job's most (requests, bytes)
    # A model in this process: the engine hands whole groups of group_size requests to run_batches, in a
    # worker thread, instead of one request at a time to answer.
    local_groups: ClassVar[bool] = False
    # Embeddings (df.llm.embed): the most inputs and estimated tokens one embedding request may carry, and
    # the most tokens of one input; None where the provider has no embedding API (embedding_model says so).
    embedding_limits: ClassVar[tuple[int, int] | None] = None
    embedding_input_tokens: ClassVar[int | None] = None
    embedding_alternatives: ClassVar[str] = ("openai:text-embedding-3-small, gemini:gemini-embedding-001, or a "
                                             "local model (transformers:<path>)")
    # The max_tokens sent when a call sets none (Anthropic's API requires one); None: none is sent. Estimates
    # and max_cost's reservations take it as a request's most output tokens.
    default_max_tokens: ClassVar[int | None] = None
    # Media (llmframe.image, llmframe.document): the (kind, URL scheme) pairs the API takes by reference, and
    # the most bytes of one image or document it takes; planning refuses the rest before anything is sent.
    media_urls: ClassVar[frozenset[tuple[str, str]]] = frozenset()
    media_max_bytes: ClassVar[dict[str, int]] = {}
    media_kinds: ClassVar[frozenset[str]] = frozenset({"image", "document"})  # what the provider takes at all
    # What asks for the answer's token log-probabilities (a cascade's confidence); None: the provider has none.
    logprob_params: ClassVar[dict | None] = None
    # Tools per row (generate(tools=...)): the provider declares tools (tool_params), puts a reply's calls on its
    # Response (tool_calls, a plan.tools.ToolTurn) and sends their results back (tool_messages); engine/toolloop
    # runs the loop.
    tool_calls: ClassVar[bool] = False

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 max_concurrency: int = constants.MAX_CONCURRENCY, timeout: float = constants.REQUEST_TIMEOUT_SECONDS,
                 options: dict | None = None):
        self.model = model
        self.base_url = base_url
        self.max_concurrency = max_concurrency
        self.timeout = timeout  # seconds one attempt may take, end to end (see answer)
        self.options = dict(options or {})
        self._api_key = self._resolve_key(api_key)
        self._client: Any = None  # the SDK client, where the provider has one: see client

    @property
    def client(self) -> Any:
        """The SDK client this provider configured (key, endpoint, timeouts), for its batch adapter; None if none.

        aclose() may close it: the next use opens a new one (open_client), so one Provider instance
        passed as model= serves run after run.
        """
        if self._client is None:
            self._client = self.open_client()
        return self._client

    def open_client(self) -> Any:
        """A new SDK client, configured as this provider's; None where it has none."""
        return None

    @property
    def group_size(self) -> int:
        """How many pending requests the engine hands run_batches at once (local_groups providers)."""
        raise NotImplementedError(f"{type(self).__name__} answers one request at a time")

    def run_batches(self, requests: list[Request], stop: threading.Event) -> Iterator[Batch]:
        """Answer a group, yielding each batch's answers as it finishes (local_groups providers)."""
        raise NotImplementedError(f"{type(self).__name__} answers one request at a time")

    def _resolve_key(self, api_key: str | None) -> str | None:
        if not self.key_env:
            return api_key
        key = api_key if api_key is not None else next(
            (os.environ[v] for v in self.key_env if os.environ.get(v)), None
        )
        if not key or not key.strip():
            names = " or ".join(self.key_env)
            raise ConfigError(f"no API key for {self.name}: set {names}, or pass api_key=...{self.key_hint}")
        return key

    @contextlib.contextmanager
    def stainless_errors(self, sdk) -> Iterator[None]:
        """Map the exceptions of a Stainless-generated SDK (openai, anthropic) onto ProviderError."""
        try:
            yield
        except sdk.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            nested = body.get("error") if isinstance(body.get("error"), dict) else {}
            message = body.get("message") or nested.get("message") or exc.message
            raise ProviderError(redact(f"HTTP {exc.status_code}: {message}", *self.secrets), status=exc.status_code,
                                headers=exc.response.headers, body=str(exc.body),
                                quota=quota_spent(exc.status_code, exc.body)) from None
        except sdk.APITimeoutError as exc:
            raise ProviderError("request timed out", retryable=True, connected=not never_connected(exc)) from None
        except sdk.APIConnectionError as exc:
            raise ProviderError(redact(f"connection error: {exc.__cause__ or exc}", *self.secrets),
                                retryable=True, connected=not never_connected(exc)) from None
        except (sdk.APIResponseValidationError, ValueError) as exc:
            raise ProviderError(f"malformed response: {type(exc).__name__}", retryable=True) from None

    def sdk_http_client(self, factory):
        """An SDK's default HTTP client with its pool sized to our concurrency, so the pool is never the limit."""
        try:  # the Stainless SDKs (openai, anthropic) ship on httpx2 in their newest releases, httpx before
            import httpx2 as httpx
        except ImportError:  # pragma: no cover - depends on the installed SDK
            import httpx
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        # pool=None: waiting for a free connection is queueing, not a connect failure. httpx's timeouts are
        # per read and write; Provider.answer bounds the whole attempt.
        timeout = httpx.Timeout(self.timeout, connect=constants.CONNECT_TIMEOUT_SECONDS, pool=None)
        return factory(limits=limits, timeout=timeout)

    def resolved_url(self) -> str | None:
        """The base URL the client sends to, as its SDK resolved it (argument, environment, default)."""
        return None

    @property
    def endpoint(self) -> str | None:
        """The resolved endpoint, normalised; None for the provider's official one (and for local models)."""
        return self._unofficial(self.resolved_url())

    @classmethod
    def endpoint_for(cls, base_url: str | None) -> str | None:
        """endpoint of a provider made with base_url=, without making one (base_url=, else base_url_env, else
        the official endpoint): what a plan puts in its keys. None without base_url_env, as resolved_url's default."""
        if cls.base_url_env is None:
            return None
        return cls._unofficial(base_url or os.environ.get(cls.base_url_env))

    @classmethod
    def _unofficial(cls, url: str | None) -> str | None:
        """url normalised; None for no url and for one of the provider's official endpoints."""
        if url is None:
            return None
        url = normalise_endpoint(url)
        host = urllib.parse.urlsplit(url).hostname or ""
        domain = cls.official_domain
        if url in cls.official_endpoints or (domain and url.startswith("https://") and host.endswith(domain)):
            return None
        return url

    @property
    def limiter_key(self) -> tuple:
        """What identifies one rate-limit budget: provider, resolved endpoint, model and key (hashed by the limiter)."""
        return (self.name, self.endpoint, self.model, self._api_key)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in anything llmframe writes or raises."""
        return (self._api_key,) if self._api_key else ()

    @classmethod
    def output_params(cls, schema: OutputSchema, *, strict: bool, structured: str) -> dict:
        """Request parameters that make the model answer in the schema; SchemaError if it cannot be expressed.

        structured="json_object": JSON mode only, where the provider has one (the schema is in the prompt).
        """
        raise SchemaError(f"the {cls.name} provider does not support structured outputs yet")

    @classmethod
    def prompt_cache_params(cls, prefix: StaticPrefix | None, model: str) -> dict:
        """Request parameters that let the provider's prompt cache serve the run's static prefix (none: {}).

        Added after the cache key is made: they route or mark a request, and change no answer.
        """
        return {}

    @classmethod
    def tool_params(cls, specs: list[dict]) -> dict:
        """Request parameters declaring the tools ({"name", "description", "parameters"} each)."""
        raise ConfigError(f"the {cls.name} provider cannot call tools")

    @classmethod
    def tool_messages(cls, turn, results: list) -> list[dict]:
        """The messages that follow a ToolTurn in the conversation: the model's turn, then its calls' results."""
        raise ConfigError(f"the {cls.name} provider cannot call tools")

    @classmethod
    def token_counter(cls, model: str) -> tuple[Callable[[list[dict]], int], str] | None:
        """How estimates count one request's input tokens for model: (messages -> tokens, the counter's name,
        e.g. "tiktoken:o200k_base"); None, the default: characters / 4."""
        return None

    @classmethod
    def check_params(cls, params: dict) -> None:
        """Raise ConfigError for generation parameters this provider cannot take (the APIs judge their own)."""

    @classmethod
    def check_api(cls, api: str | None, params: dict) -> None:
        """ConfigError for api= (OpenAI's and Azure's choice of API) or reasoning_effort= on a provider without them."""
        if api not in (None, "chat"):
            raise ConfigError(f"api={api!r} is for the openai and azure providers; the {cls.name} provider has one "
                              "API: leave api= out")
        if "reasoning_effort" in params:
            raise ConfigError(f"reasoning_effort= is for OpenAI's reasoning models (openai:, azure:); the {cls.name} "
                              "provider takes its own reasoning settings through params=")

    @classmethod
    def embedding_model(cls, model: str, *, dimensions: int | None, endpoint: str | None) -> None:
        """ConfigError when model cannot embed (a chat model), or not at these dimensions; before anything is sent.

        endpoint is None for the provider's official one: elsewhere (a compatible server) any name may embed.
        """
        if cls.embedding_limits is None:
            raise ConfigError(f"the {cls.name} provider has no embedding API; embed with "
                              f"{cls.embedding_alternatives} instead")

    @classmethod
    def chat_model(cls, model: str, *, endpoint: str | None) -> None:
        """ConfigError when model is known to be an embedding model, which generate cannot use."""

    @classmethod
    def embeds_media(cls, model: str) -> bool:
        """True where model embeds images and documents with text (embed() then gets message lists for them)."""
        return False

    async def embed(self, texts: list[str], params: dict) -> Embedded:
        """One embedding request for all of texts (params: the plan's embedding settings); ProviderError on failure."""
        raise ConfigError(f"the {self.name} provider has no embedding API; embed with {self.embedding_alternatives}")

    async def embed_within(self, texts: list[str], params: dict) -> Embedded:
        """embed() within timeout seconds in all, as answer() bounds complete()."""
        return await self._within(self.embed(texts, params))

    @abstractmethod
    async def complete(self, request: Request) -> Response:
        """Send one request and return its answer; raise ProviderError on failure."""

    async def answer(self, request: Request) -> Response:
        """complete() within timeout seconds in all, so a reply trickling in a byte at a time is cut off too."""
        return await self._within(self.complete(request))

    async def _within(self, call):
        """The awaitable call within timeout seconds in all; ProviderError (retryable) past it."""
        # The transports' own timeouts are per read: a drip resets them with every byte.
        try:
            if _deadline is None:  # Python 3.10
                return await asyncio.wait_for(call, self.timeout)
            async with _deadline(self.timeout):  # no task per request, unlike wait_for
                return await call
        except asyncio.TimeoutError:
            raise ProviderError("request timed out", retryable=True) from None

    async def aclose(self) -> None:
        """Release connections; called once, on the executor's loop, at the end of a run."""

    def __repr__(self) -> str:
        # Never show the key: reprs end up in logs and tracebacks.
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"


def normalise_endpoint(url: str) -> str:
    """One spelling per endpoint: scheme and host in lower case, no credentials, no trailing slash."""
    parts = urllib.parse.urlsplit(str(url).strip())
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, ""))
@functools.cache
def _connect_failures() -> tuple[type[BaseException], ...]:
    """The transport errors that mean no connection was made: refused, unresolvable, connect timed out."""
    import aiohttp

    found: list[type[BaseException]] = [ConnectionRefusedError, socket.gaierror, aiohttp.ClientConnectorError]
    if hasattr(aiohttp, "ConnectionTimeoutError"):  # aiohttp >= 3.10: sock_connect ran out
        found.append(aiohttp.ConnectionTimeoutError)
    for name in ("httpx", "httpx2"):  # the Stainless SDKs' transport, by release
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found += [module.ConnectError, module.ConnectTimeout]
    return tuple(found)


def never_connected(exc: BaseException | None) -> bool:
    """True when exc, or the error it was raised from, means the request never reached a server."""
    for _ in range(4):  # an SDK wraps the transport's error once or twice
        if exc is None:
            return False
        if isinstance(exc, _connect_failures()):
            return True
        exc = exc.__cause__
    return False
