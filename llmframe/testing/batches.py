"""The simulator's batch APIs, their shared core: the batches and files created, their progress and answers.

The protocols live beside it: openai_batches (Files + Batches), anthropic_batches (Message Batches)
and gemini_batches (batches and files). Each speaks its vendor's protocol as the official SDK does,
so openai's client.files/client.batches, anthropic's client.messages.batches and google-genai's
client.batches/client.files work against it unchanged. A batch progresses linearly from creation
to `BatchSettings.seconds`; a share `error_rate` of its lines fail; with `expire_after` it expires
then, keeping what had finished; a cancelled batch keeps what had finished by the cancel. Answers
are the simulator's own (the same answer function as the online routes), so a batch answer equals
the online answer to the same request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from . import logprobs, packed
from .answers import completion_limit, fit, prompt_tokens, tokens
from .gemini_generate import GEMINI
from .openai_chat import OPENAI, Dialect

if TYPE_CHECKING:
    from .simulator import Simulator

Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass
class BatchSettings:
    """How simulated batches behave; replace Simulator.batches.settings to change it (reset restores it)."""

    seconds: float = 0.2  # from creation until every request is finished
    error_rate: float = 0.0  # share of requests whose line fails (chosen by a hash of the custom id)
    expire_after: float | None = None  # the batch expires this long after creation, keeping what finished
    api: bool = True  # False: a server with no batch API (vLLM, llama.cpp): every batch and file route answers 404
    outage: int = 0  # the first this many calls to the batch and file routes answer 503 (a brief outage)


@dataclass
class Created:
    """One batch creation, as the server received it."""

    vendor: str
    id: str
    requests: int
    tag: str | None  # OpenAI metadata llmframe_chunk, Gemini display name; None for Anthropic
    file: bool  # the requests came in an uploaded file (OpenAI always, Gemini for large jobs)


@dataclass
class Batch:
    """One batch: its requests, how it behaves, and the answers made so far."""

    vendor: str
    id: str
    items: list[tuple[str, dict, dict]]  # (custom id, request as sent, its chat-completions shape)
    settings: BatchSettings
    model: str
    tag: str | None = None
    extra: dict = field(default_factory=dict)  # vendor fields echoed back (input file, metadata, endpoint)
    start: float = field(default_factory=time.monotonic)
    created_at: float = field(default_factory=time.time)
    cancelled: float | None = None  # monotonic time of the cancel
    answers: dict[int, tuple[str, str, tuple[int, int]] | None] = field(default_factory=dict)

    def done_at(self, moment: float) -> int:
        """Requests finished by `moment` (monotonic)."""
        seconds = self.settings.seconds
        elapsed = moment - self.start
        return len(self.items) if seconds <= 0 or elapsed >= seconds else int(len(self.items) * elapsed / seconds)

    def state(self) -> tuple[str, int]:
        """("running" | "completed" | "expired" | "cancelled", requests finished)."""
        now = time.monotonic()
        expire = self.settings.expire_after
        if self.cancelled is not None and (expire is None or self.cancelled < self.start + expire):
            return "cancelled", self.done_at(self.cancelled)
        if expire is not None and now >= self.start + expire and self.done_at(self.start + expire) < len(self.items):
            return "expired", self.done_at(self.start + expire)
        done = self.done_at(now)
        return ("completed" if done >= len(self.items) else "running"), done

    def failed(self, custom_id: str) -> bool:
        """Whether a request's line fails (a hash of the batch and custom ids, under the error rate)."""
        rate = self.settings.error_rate
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.id}:{custom_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < rate

    def cancel(self) -> bool:
        """Cancel a running batch, keeping what had finished; whether it was running."""
        if self.state()[0] != "running":
            return False
        self.cancelled = time.monotonic()
        return True

    def counts(self) -> tuple[int, int, int]:
        """(succeeded, failed, finished) so far."""
        _state, done = self.state()
        failed = sum(self.failed(cid) for cid, _raw, _chat in self.items[:done])
        return done - failed, failed, done


class VendorBatches:
    """One vendor's batch routes, on the BatchService that keeps their batches and files."""

    def __init__(self, service: BatchService):
        self.service = service

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) of each route."""
        raise NotImplementedError


def iso_time(seconds: float) -> str:
    """A Unix time as RFC 3339, in UTC, to the second."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class BatchService:
    """The batch routes of one Simulator, and what they have created."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.settings = BatchSettings()
        self._default = self.settings
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}
        self._files: dict[str, tuple[bytes, dict]] = {}  # id -> (content, file object)
        self._uploads: dict[str, dict] = {}
        self._created: list[Created] = []
        self._ids = itertools.count(1)
        self._outage: tuple[BatchSettings | None, int] = (None, 0)  # settings, and calls answered 503 under them

    @property
    def created(self) -> list[Created]:
        """Every batch creation since start or reset, oldest first."""
        with self._lock:
            return list(self._created)

    def state(self, batch_id: str) -> tuple[str, int]:
        """A batch's ("running" | "completed" | "expired" | "cancelled", requests finished), by its id
        (a Gemini id with or without its "batches/" prefix)."""
        with self._lock:
            batch = self._batches[batch_id.removeprefix("batches/")]
        return batch.state()

    def requests(self, batch_id: str) -> list[dict]:
        """The requests of a batch as the server received them (each vendor's own shape, keys in the order sent)."""
        with self._lock:
            batch = self._batches[batch_id.removeprefix("batches/")]
        return [raw for _cid, raw, _chat in batch.items]

    def reset(self) -> None:
        """Forget batches, files and creations; restore the default settings."""
        with self._lock:
            self._batches.clear()
            self._files.clear()
            self._uploads.clear()
            self._created.clear()
        self.settings = self._default

    def add_routes(self, app: web.Application) -> None:
        """Add every vendor's batch and file routes to the simulator's application."""
        from .anthropic_batches import AnthropicBatches  # imported here: they build on this module
        from .gemini_batches import GeminiBatches
        from .azure import AzureBatches
        from .mistral_batches import MistralBatches
        from .openai_batches import OpenAIBatches

        gemini, openai = GeminiBatches(self), OpenAIBatches(self)
        # Gemini first: with a custom base_url google-genai speaks /v1/..., where its more specific
        # patterns (":download", ":cancel") must win over OpenAI's /v1/files/{id} and /v1/batches/{id}.
        add = {"GET": app.router.add_get, "POST": app.router.add_post, "DELETE": app.router.add_delete}
        for method, path, handler in (*gemini.routes(), *openai.routes(), *AnthropicBatches(self).routes(),
                                      *AzureBatches(self).routes(), *MistralBatches(self).routes()):
            add[method](path, self.gate(handler))
        # GET /v1/batches[/{id}] is OpenAI's and (on API version v1) Gemini's: the key header tells them apart.
        app.router.add_get("/v1/batches", self.gate(_by_key(gemini.list_batches, openai.list_batches)))
        app.router.add_get("/v1/batches/{id}", self.gate(_by_key(gemini.get_batch, openai.get_batch)))
        app.router.add_get("/v1/files", self.gate(_by_key(gemini.list_files, _no_listing)))  # Gemini's files.list

    def gate(self, handler: Handler) -> Handler:
        """The handler, answering 404 as FastAPI (vLLM) does while the settings say there is no batch API, and
        503 to the first `outage` calls under settings that ask for one."""
        async def gated(request: web.Request) -> web.Response:
            settings = self.settings
            if not settings.api:
                return web.json_response({"detail": "Not Found"}, status=404)
            with self._lock:
                under, failed = self._outage
                failed = failed if under is settings else 0
                self._outage = (settings, failed + 1)
                if failed < settings.outage:
                    return web.json_response({"error": {"message": "The server is overloaded", "type": "server_error",
                                                        "code": None}}, status=503)
            return await handler(request)

        return gated

    # --- for the vendors' routes -----------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        """A fresh id for a batch, a file or an upload."""
        return f"{prefix}{next(self._ids):06d}"

    def add(self, batch: Batch) -> Batch:
        """Record a new batch and its creation."""
        with self._lock:
            self._batches[batch.id] = batch
            file = batch.vendor in ("openai", "azure") or bool(batch.extra.get("file"))
            self._created.append(Created(batch.vendor, batch.id, len(batch.items), batch.tag, file))
        return batch

    def find(self, vendor: str, batch_id: str) -> Batch | None:
        """A vendor's batch by its id, or None."""
        with self._lock:
            batch = self._batches.get(batch_id)
        return batch if batch is not None and batch.vendor == vendor else None

    def lookup(self, dialect: Dialect, vendor: str, request: web.Request, missing: str) -> Batch | web.Response:
        """The batch of a request's {id}, or the response refusing it: no key, or (with `missing`) no such batch."""
        if (refused := unauthorized(dialect, request)) is not None:
            return refused
        batch = self.find(vendor, request.match_info["id"])
        return batch if batch is not None else dialect.error(404, missing)

    def listed(self, vendor: str) -> list[Batch]:
        """A vendor's batches, oldest first."""
        with self._lock:
            return [b for b in self._batches.values() if b.vendor == vendor]

    def file(self, file_id: str) -> tuple[bytes, dict] | None:
        """An uploaded file's (content, file object), or None."""
        with self._lock:
            return self._files.get(file_id)

    def store_file(self, file_id: str, data: bytes, obj: dict) -> None:
        """Keep an uploaded file."""
        with self._lock:
            self._files[file_id] = (data, obj)

    def delete_file(self, file_id: str) -> bool:
        """Forget an uploaded file; False if there was none."""
        with self._lock:
            return self._files.pop(file_id, None) is not None

    def files(self) -> list[str]:
        """The ids of the files uploaded and not deleted."""
        with self._lock:
            return list(self._files)

    def upload(self, upload_id: str, meta: dict | None = None) -> dict | None:
        """An upload in progress ({"data": bytearray, "meta": ...}), started anew when `meta` is given."""
        with self._lock:
            if meta is not None:
                self._uploads[upload_id] = {"data": bytearray(), "meta": meta}
            return self._uploads.get(upload_id)

    def answer(self, batch: Batch, i: int) -> tuple[str, str, tuple[int, int]] | None:
        """(text, finish, (prompt, completion) tokens) of item i, or None if its line fails."""
        if i not in batch.answers:
            custom_id, _raw, chat = batch.items[i]
            if batch.failed(custom_id):
                batch.answers[i] = None
            else:
                found = packed.item_schema(chat)  # a packed line: each item answered by its id
                text = self.sim.answer(chat) if found is None else \
                    packed.answer(chat, self.sim.answer, self.sim.fault_state(), found)
                text, truncated = fit(text, completion_limit(chat))
                batch.answers[i] = (text, "length" if truncated else "stop", (prompt_tokens(chat), tokens(text)))
        return batch.answers[i]

    def reply(self, dialect: Dialect, batch: Batch, i: int) -> dict | None:
        """The vendor's success body for item i, or None if its line fails."""
        answer = self.answer(batch, i)
        if answer is None:
            return None
        _cid, raw, chat = batch.items[i]
        text, finish, usage = answer
        reply = dialect.reply(self.sim.next_id(), raw, chat, text, finish, usage, False)
        return logprobs.attach(reply, raw, chat, text, self.sim.confidence)  # where the line asked for them


def unauthorized(dialect: Dialect, request: web.Request) -> web.Response | None:
    """The dialect's refusal of a request without a key, or None for one with a key."""
    return None if dialect.key(request) else dialect.unauthorized()


def _by_key(gemini: Handler, openai: Handler) -> Handler:
    """A handler of a route both vendors use: Gemini's for a request with only a Gemini key, else OpenAI's."""
    async def handle(request: web.Request) -> web.Response:
        if GEMINI.key(request) and not OPENAI.key(request):
            return await gemini(request)
        return await openai(request)

    return handle


async def _no_listing(request: web.Request) -> web.Response:
    """GET /v1/files without a Gemini key: the simulator lists no OpenAI files."""
    raise web.HTTPMethodNotAllowed("GET", ["POST"])
