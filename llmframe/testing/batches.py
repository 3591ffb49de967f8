"""The simulator's batch APIs: OpenAI Files + Batches, Anthropic Message Batches, Gemini batches and files.

Each speaks its vendor's protocol as the official SDK does, so openai's client.files/client.batches,
anthropic's client.messages.batches and google-genai's client.batches/client.files work against it
unchanged. A batch progresses linearly from creation to `BatchSettings.seconds`; a share
`error_rate` of its lines fail; with `expire_after` it expires then, keeping what had finished; a
cancelled batch keeps what had finished by the cancel. Answers are the simulator's own (the same
answer function as the online routes), so a batch answer equals the online answer to the same request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from .simulator import OPENAI, BadRequest, Dialect, _text, _tokens
from .vendors import ANTHROPIC, GEMINI

if TYPE_CHECKING:
    from .simulator import Simulator


@dataclass
class BatchSettings:
    """How simulated batches behave; replace Simulator.batches.settings to change it (reset restores it)."""

    seconds: float = 0.2  # from creation until every request is finished
    error_rate: float = 0.0  # share of requests whose line fails (chosen by a hash of the custom id)
    expire_after: float | None = None  # the batch expires this long after creation, keeping what finished
    api: bool = True  # False: a server with no batch API (vLLM, llama.cpp): every batch and file route answers 404


@dataclass
class Created:
    """One batch creation, as the server received it."""

    vendor: str
    id: str
    requests: int
    tag: str | None  # OpenAI metadata llmframe_chunk, Gemini display name; None for Anthropic
    file: bool  # the requests came in an uploaded file (OpenAI always, Gemini for large jobs)


@dataclass
class _Batch:
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
        rate = self.settings.error_rate
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.id}:{custom_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < rate

    def counts(self) -> tuple[int, int, int]:
        """(succeeded, failed, finished) so far."""
        _state, done = self.state()
        failed = sum(self.failed(cid) for cid, _raw, _chat in self.items[:done])
        return done - failed, failed, done


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class _GeminiRoute:
    """The match_info a dialect's parse reads, for a request that came inside a batch."""

    def __init__(self, model: str):
        self.match_info = {"model": model}


class _Gated:
    """A router whose routes all pass through BatchService.gate."""

    def __init__(self, router, service: BatchService):
        self.router, self.service = router, service

    def add_get(self, path: str, handler) -> None:
        self.router.add_get(path, self.service.gate(handler))

    def add_post(self, path: str, handler) -> None:
        self.router.add_post(path, self.service.gate(handler))


class BatchService:
    """The batch routes of one Simulator, and what they have created."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.settings = BatchSettings()
        self._default = self.settings
        self._lock = threading.Lock()
        self._batches: dict[str, _Batch] = {}
        self._files: dict[str, tuple[bytes, dict]] = {}  # id -> (content, file object)
        self._uploads: dict[str, dict] = {}
        self._created: list[Created] = []
        self._ids = itertools.count(1)

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
        r = _Gated(app.router, self)
        # Gemini first: with a custom base_url google-genai speaks /v1/..., where its more specific
        # patterns (":download", ":cancel") must win over OpenAI's /v1/files/{id} and /v1/batches/{id}.
        for version in ("v1beta", "v1"):
            r.add_post(f"/{version}/models/{{model:[^/:]+}}:batchGenerateContent", self._gemini_create)
            r.add_post(f"/{version}/batches/{{id:[^/:]+}}:cancel", self._gemini_cancel)
            r.add_post(f"/upload/{version}/files", self._gemini_upload)
            r.add_get(f"/{version}/files/{{id:[^/:]+}}:download", self._gemini_download)
        r.add_get("/v1beta/batches/{id:[^/:]+}", self._gemini_get)
        r.add_get("/v1beta/batches", self._gemini_list)
        r.add_post("/v1/files", self._openai_upload)
        r.add_get("/v1/files/{id}", self._openai_file)
        r.add_get("/v1/files/{id}/content", self._openai_content)
        r.add_post("/v1/batches", self._openai_create)
        r.add_get("/v1/batches", self._list_v1_batches)
        r.add_get("/v1/batches/{id}", self._get_v1_batch)
        r.add_post("/v1/batches/{id}/cancel", self._openai_cancel)
        r.add_post("/v1/messages/batches", self._anthropic_create)
        r.add_get("/v1/messages/batches/{id}", self._anthropic_get)
        r.add_post("/v1/messages/batches/{id}/cancel", self._anthropic_cancel)
        r.add_get("/v1/messages/batches/{id}/results", self._anthropic_results)

    async def _list_v1_batches(self, request: web.Request) -> web.Response:
        if GEMINI.key(request) and not OPENAI.key(request):
            return await self._gemini_list(request)
        return await self._openai_list(request)

    async def _get_v1_batch(self, request: web.Request) -> web.Response:
        """GET /v1/batches/{id} is OpenAI's and (on API version v1) Gemini's: the key header tells them apart."""
        if GEMINI.key(request) and not OPENAI.key(request):
            return await self._gemini_get(request)
        return await self._openai_get(request)

    # --- shared --------------------------------------------------------------------------------

    def gate(self, handler):
        """The handler, answering 404 as FastAPI (vLLM) does while the settings say there is no batch API."""
        async def gated(request: web.Request) -> web.Response:
            if not self.settings.api:
                return web.json_response({"detail": "Not Found"}, status=404)
            return await handler(request)

        return gated

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _add(self, batch: _Batch) -> _Batch:
        with self._lock:
            self._batches[batch.id] = batch
            file = batch.vendor == "openai" or bool(batch.extra.get("file"))
            self._created.append(Created(batch.vendor, batch.id, len(batch.items), batch.tag, file))
        return batch

    def _find(self, vendor: str, batch_id: str) -> _Batch | None:
        with self._lock:
            batch = self._batches.get(batch_id)
        return batch if batch is not None and batch.vendor == vendor else None

    def _answer(self, batch: _Batch, i: int) -> tuple[str, str, tuple[int, int]] | None:
        """(text, finish, (prompt, completion) tokens) of item i, or None if its line fails."""
        if i not in batch.answers:
            custom_id, _raw, chat = batch.items[i]
            if batch.failed(custom_id):
                batch.answers[i] = None
            else:
                text = self.sim.answer(chat)
                limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
                finish = "stop"
                if isinstance(limit, int) and _tokens(text) > limit:
                    text, finish = text[: limit * 4], "length"
                prompt = _tokens("".join(_text(m.get("content")) for m in chat["messages"] if isinstance(m, dict)))
                batch.answers[i] = (text, finish, (prompt, _tokens(text)))
        return batch.answers[i]

    def _reply(self, dialect: Dialect, batch: _Batch, i: int) -> dict | None:
        """The vendor's success body for item i, or None if its line fails."""
        answer = self._answer(batch, i)
        if answer is None:
            return None
        _cid, raw, chat = batch.items[i]
        text, finish, usage = answer
        return dialect.reply(next(self.sim._ids), raw, chat, text, finish, usage, False)

    @staticmethod
    def _unauthorized(dialect: Dialect, request: web.Request) -> web.Response | None:
        return None if dialect.key(request) else dialect.unauthorized()

    # --- OpenAI --------------------------------------------------------------------------------

    async def _openai_upload(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(OPENAI, request)) is not None:
            return refused
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not hasattr(upload, "file") or purpose != "batch":
            return OPENAI.error(400, "expected a multipart upload with a 'file' and purpose 'batch'")
        data = upload.file.read()
        file_id = self._new_id("file-sim")
        obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": upload.filename, "purpose": purpose, "status": "processed"}
        with self._lock:
            self._files[file_id] = (data, obj)
        return web.json_response(obj)

    async def _openai_file(self, request: web.Request) -> web.Response:
        found = self._openai_output(request.match_info["id"])
        return web.json_response(found[1]) if found else OPENAI.error(404, "No such File object")

    async def _openai_content(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(OPENAI, request)) is not None:
            return refused
        found = self._openai_output(request.match_info["id"])
        if found is None:
            return OPENAI.error(404, "No such File object")
        return web.Response(body=found[0], content_type="application/octet-stream")

    def _openai_output(self, file_id: str) -> tuple[bytes, dict] | None:
        """An uploaded file, or a batch's output (file-out-<id>) or error file (file-err-<id>), made on demand."""
        with self._lock:
            if file_id in self._files:
                return self._files[file_id]
        for prefix, errors in (("file-out-", False), ("file-err-", True)):
            if file_id.startswith(prefix) and (batch := self._find("openai", file_id[len(prefix):])) is not None:
                data = "".join(json.dumps(line) + "\n" for line in self._openai_lines(batch, errors)).encode()
                return data, {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                              "filename": f"{file_id}.jsonl", "purpose": "batch_output", "status": "processed"}
        return None

    def _openai_lines(self, batch: _Batch, errors: bool) -> list[dict]:
        state, done = batch.state()
        lines = []
        for i, (custom_id, _raw, _chat) in enumerate(batch.items):
            line_id = f"batch_req_{batch.id}_{i}"
            if i >= done:
                if errors and state in ("expired", "cancelled"):
                    code = "batch_expired" if state == "expired" else "batch_cancelled"
                    message = f"This request was not executed: the batch was {state}."
                    lines.append({"id": line_id, "custom_id": custom_id, "response": None,
                                  "error": {"code": code, "message": message}})
                continue
            body = self._reply(OPENAI, batch, i)
            if (body is None) != errors:
                continue
            if body is None:
                body = {"error": {"message": "simulated batch line error", "type": "server_error", "code": None}}
            lines.append({"id": line_id, "custom_id": custom_id, "error": None,
                          "response": {"status_code": 500 if errors else 200, "request_id": f"req_{i}", "body": body}})
        return lines

    def _openai_object(self, batch: _Batch) -> dict:
        state, _done = batch.state()
        succeeded, failed, _ = batch.counts()
        status = {"running": "in_progress", "cancelled": "cancelled"}.get(state, state)
        ended = state != "running"
        obj = {"id": batch.id, "object": "batch", "created_at": int(batch.created_at),
               "expires_at": int(batch.created_at) + 86400, "status": status, "model": batch.model,
               "request_counts": {"total": len(batch.items), "completed": succeeded, "failed": failed},
               "output_file_id": f"file-out-{batch.id}" if ended else None,
               "error_file_id": f"file-err-{batch.id}" if ended else None, "errors": None, **batch.extra}
        if batch.cancelled is not None and state == "cancelled":
            obj["cancelled_at"] = int(time.time())
        return obj

    async def _openai_create(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(OPENAI, request)) is not None:
            return refused
        body = await request.json()
        with self._lock:
            found = self._files.get(body.get("input_file_id"))
        if found is None:
            return OPENAI.error(400, f"input_file_id {body.get('input_file_id')!r} not found")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return OPENAI.error(400, "endpoint must be /v1/chat/completions and completion_window 24h")
        items, model = [], None
        for number, text in enumerate(found[0].decode().splitlines(), 1):
            if not text.strip():
                continue
            line = json.loads(text)
            if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
                return OPENAI.error(400, f"line {number}: method must be POST and url /v1/chat/completions")
            try:
                chat = OPENAI.parse(request, line.get("body"))
            except BadRequest as exc:
                return OPENAI.error(400, f"line {number}: {exc}")
            items.append((line["custom_id"], line["body"], chat))
            model = model or chat.get("model")
        if len({cid for cid, _r, _c in items}) != len(items):
            return OPENAI.error(400, "custom_id values must be unique within a batch")
        metadata = body.get("metadata") or {}
        batch = self._add(_Batch("openai", self._new_id("batch_sim"), items, self.settings, model or "",
                                 tag=metadata.get("llmframe_chunk"),
                                 extra={"endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                                        "completion_window": "24h", "metadata": metadata}))
        return web.json_response(self._openai_object(batch))

    async def _openai_get(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(OPENAI, request)) is not None:
            return refused
        batch = self._find("openai", request.match_info["id"])
        return web.json_response(self._openai_object(batch)) if batch else OPENAI.error(404, "No such batch")

    async def _openai_cancel(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(OPENAI, request)) is not None:
            return refused
        batch = self._find("openai", request.match_info["id"])
        if batch is None:
            return OPENAI.error(404, "No such batch")
        if batch.state()[0] == "running":
            batch.cancelled = time.monotonic()
            obj = {**self._openai_object(batch), "status": "cancelling", "output_file_id": None, "error_file_id": None}
            return web.json_response(obj)
        return web.json_response(self._openai_object(batch))

    async def _openai_list(self, request: web.Request) -> web.Response:
        with self._lock:
            found = [b for b in self._batches.values() if b.vendor == "openai"]
        data = [self._openai_object(b) for b in reversed(found)]
        return web.json_response({"object": "list", "data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    # --- Anthropic -----------------------------------------------------------------------------

    def _anthropic_object(self, request: web.Request, batch: _Batch) -> dict:
        state, done = batch.state()
        succeeded, failed, _ = batch.counts()
        ended = state != "running"
        rest = len(batch.items) - done
        counts = {"processing": 0 if ended else rest, "succeeded": succeeded if ended else 0,
                  "errored": failed if ended else 0, "canceled": rest if state == "cancelled" else 0,
                  "expired": rest if state == "expired" else 0}
        base = f"{request.scheme}://{request.host}"
        return {"id": batch.id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
                "request_counts": counts, "created_at": _iso(batch.created_at),
                "expires_at": _iso(batch.created_at + 86400), "ended_at": _iso(time.time()) if ended else None,
                "cancel_initiated_at": _iso(time.time()) if batch.cancelled is not None else None,
                "archived_at": None,
                "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if ended else None}

    async def _anthropic_create(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(ANTHROPIC, request)) is not None:
            return refused
        body = await request.json()
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return ANTHROPIC.error(400, "requests: Field required")
        items = []
        for number, entry in enumerate(requests):
            try:
                chat = ANTHROPIC.parse(request, entry.get("params"))
            except BadRequest as exc:
                return ANTHROPIC.error(400, f"requests.{number}.params: {exc}")
            items.append((entry["custom_id"], entry["params"], chat))
        if len({cid for cid, _r, _c in items}) != len(items):
            return ANTHROPIC.error(400, "requests: custom_id values must be unique")
        batch = self._add(_Batch("anthropic", self._new_id("msgbatch_sim"), items, self.settings,
                                 items[0][2].get("model", "")))
        return web.json_response(self._anthropic_object(request, batch))

    async def _anthropic_get(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(ANTHROPIC, request)) is not None:
            return refused
        batch = self._find("anthropic", request.match_info["id"])
        if batch is None:
            return ANTHROPIC.error(404, "batch not found")
        return web.json_response(self._anthropic_object(request, batch))

    async def _anthropic_cancel(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(ANTHROPIC, request)) is not None:
            return refused
        batch = self._find("anthropic", request.match_info["id"])
        if batch is None:
            return ANTHROPIC.error(404, "batch not found")
        if batch.state()[0] == "running":
            batch.cancelled = time.monotonic()
            return web.json_response({**self._anthropic_object(request, batch), "processing_status": "canceling",
                                      "results_url": None, "ended_at": None})
        return web.json_response(self._anthropic_object(request, batch))

    async def _anthropic_results(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(ANTHROPIC, request)) is not None:
            return refused
        batch = self._find("anthropic", request.match_info["id"])
        if batch is None:
            return ANTHROPIC.error(404, "batch not found")
        state, done = batch.state()
        if state == "running":
            return ANTHROPIC.error(400, "the batch is still processing; results are available once it has ended")
        out = []
        for i, (custom_id, _raw, _chat) in enumerate(batch.items):
            if i >= done:
                result: dict = {"type": "canceled" if state == "cancelled" else "expired"}
            elif (message := self._reply(ANTHROPIC, batch, i)) is None:
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "api_error", "message": "simulated batch line error"}}}
            else:
                result = {"type": "succeeded", "message": message}
            out.append(json.dumps({"custom_id": custom_id, "result": result}) + "\n")
        return web.Response(body="".join(out).encode(), content_type="application/binary")

    # --- Gemini --------------------------------------------------------------------------------

    def _gemini_object(self, batch: _Batch) -> dict:
        state, done = batch.state()
        succeeded, failed, _ = batch.counts()
        word = {"running": "BATCH_STATE_RUNNING", "completed": "BATCH_STATE_SUCCEEDED",
                "expired": "BATCH_STATE_EXPIRED", "cancelled": "BATCH_STATE_CANCELLED"}[state]
        metadata: dict = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{batch.model}", "displayName": batch.tag or "", "state": word,
            "createTime": _iso(batch.created_at), "updateTime": _iso(time.time()),
            "batchStats": {"requestCount": str(len(batch.items)), "successfulRequestCount": str(succeeded),
                           "failedRequestCount": str(failed), "pendingRequestCount": str(len(batch.items) - done)},
        }
        if state != "running":
            metadata["endTime"] = _iso(time.time())
            if batch.extra.get("file"):
                metadata["output"] = {"responsesFile": f"files/out-{batch.id}"}
            else:
                metadata["output"] = {"inlinedResponses": {"inlinedResponses": self._gemini_lines(batch, inline=True)}}
        return {"name": f"batches/{batch.id}", "metadata": metadata}

    def _gemini_lines(self, batch: _Batch, *, inline: bool) -> list[dict]:
        _state, done = batch.state()
        lines = []
        for i, (custom_id, _raw, _chat) in enumerate(batch.items[:done]):
            reply = self._reply(GEMINI, batch, i)
            entry: dict = {"response": reply} if reply is not None else {
                "error": {"code": 500, "message": "simulated batch line error", "status": "INTERNAL"}}
            if inline:
                if batch.extra["metadata"][i] is not None:
                    entry["metadata"] = batch.extra["metadata"][i]
            else:
                entry["key"] = custom_id
            lines.append(entry)
        return lines

    async def _gemini_create(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(GEMINI, request)) is not None:
            return refused
        body = await request.json()
        model = request.match_info["model"]
        spec = (body.get("batch") or {}) if isinstance(body, dict) else {}
        config = spec.get("inputConfig") or {}
        route = _GeminiRoute(model)
        items, metadata = [], []
        if config.get("fileName"):
            name = config["fileName"].removeprefix("files/")
            with self._lock:
                found = self._files.get(name)
            if found is None:
                return GEMINI.error(404, f"File {config['fileName']} not found")
            entries = [json.loads(t) for t in found[0].decode().splitlines() if t.strip()]
            pairs = [(e.get("key"), e.get("request"), None) for e in entries]
        elif isinstance((config.get("requests") or {}).get("requests"), list):
            entries = config["requests"]["requests"]
            pairs = [((e.get("metadata") or {}).get("key", str(n)), e.get("request"), e.get("metadata"))
                     for n, e in enumerate(entries)]
        else:
            return GEMINI.error(400, "batch.inputConfig needs requests or a fileName")
        for number, (key, raw, meta) in enumerate(pairs):
            try:
                chat = GEMINI.parse(route, raw)  # type: ignore[arg-type]  # parse reads only match_info
            except BadRequest as exc:
                return GEMINI.error(400, f"request {number}: {exc}")
            items.append((key, raw, chat))
            metadata.append(meta)
        batch = self._add(_Batch("gemini", self._new_id("sim"), items, self.settings, model,
                                 tag=spec.get("displayName"),
                                 extra={"file": bool(config.get("fileName")), "metadata": metadata}))
        obj = self._gemini_object(batch)
        if batch.state()[0] == "running":
            obj["metadata"]["state"] = "BATCH_STATE_PENDING"
        return web.json_response(obj)

    async def _gemini_get(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(GEMINI, request)) is not None:
            return refused
        batch = self._find("gemini", request.match_info["id"])
        return web.json_response(self._gemini_object(batch)) if batch else GEMINI.error(404, "batch not found")

    async def _gemini_list(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(GEMINI, request)) is not None:
            return refused
        with self._lock:
            found = [b for b in self._batches.values() if b.vendor == "gemini"]
        return web.json_response({"operations": [self._gemini_object(b) for b in reversed(found)]})

    async def _gemini_cancel(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(GEMINI, request)) is not None:
            return refused
        batch = self._find("gemini", request.match_info["id"])
        if batch is None:
            return GEMINI.error(404, "batch not found")
        if batch.state()[0] == "running":
            batch.cancelled = time.monotonic()
        return web.json_response({})

    async def _gemini_upload(self, request: web.Request) -> web.Response:
        """The resumable upload protocol: a start request gets an upload URL; chunks go to it, the last finalizes."""
        command = request.headers.get("X-Goog-Upload-Command", "")
        if "start" in command:
            if (refused := self._unauthorized(GEMINI, request)) is not None:
                return refused  # the chunks that follow carry no key: the upload URL is their credential
            upload_id = self._new_id("up")
            meta = (await request.json()).get("file") or {}
            with self._lock:
                self._uploads[upload_id] = {"data": bytearray(), "meta": meta}
            url = f"{request.scheme}://{request.host}{request.path}?upload_id={upload_id}"
            return web.json_response({}, headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})
        with self._lock:
            upload = self._uploads.get(request.query.get("upload_id", ""))
        if upload is None:
            return GEMINI.error(404, "unknown upload")
        upload["data"] += await request.read()
        if "finalize" not in command:
            return web.json_response({}, headers={"X-Goog-Upload-Status": "active"})
        file_id = self._new_id("simfile")
        obj = {"name": f"files/{file_id}", "displayName": upload["meta"].get("displayName", ""),
               "mimeType": upload["meta"].get("mimeType", "jsonl"), "sizeBytes": str(len(upload["data"])),
               "createTime": _iso(time.time()), "state": "ACTIVE", "source": "UPLOADED"}
        with self._lock:
            self._files[file_id] = (bytes(upload["data"]), obj)
        return web.json_response({"file": obj}, headers={"X-Goog-Upload-Status": "final"})

    async def _gemini_download(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(GEMINI, request)) is not None:
            return refused
        name = request.match_info["id"]
        batch = self._find("gemini", name.removeprefix("out-")) if name.startswith("out-") else None
        if batch is None:
            return GEMINI.error(404, f"File files/{name} not found")
        lines = self._gemini_lines(batch, inline=False)
        return web.Response(body="".join(json.dumps(line) + "\n" for line in lines).encode(),
                            content_type="application/octet-stream")
