"""OpenAI's Files and Batches APIs (/v1/files, /v1/batches), as openai's client.files and client.batches speak them."""

from __future__ import annotations

import json
import time

from aiohttp import web

from . import embeddings
from .batches import Batch, Handler, VendorBatches, unauthorized
from .openai_chat import OPENAI, BadRequest
from .openai_responses import RESPONSES

# The endpoints a batch may target, and the dialect its lines are read and answered in.
ENDPOINTS = {"/v1/chat/completions": OPENAI, "/v1/responses": RESPONSES, embeddings.ENDPOINT: embeddings.OPENAI}


class OpenAIBatches(VendorBatches):
    """The OpenAI batch and file routes of a BatchService."""

    vendor, dialect, endpoints = "openai", OPENAI, ENDPOINTS

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) of each route; GET /v1/batches[/{id}], shared with Gemini, come from add_routes."""
        return [
            ("POST", "/v1/files", self.upload),
            ("GET", "/v1/files/{id}", self.file),
            ("GET", "/v1/files/{id}/content", self.content),
            ("POST", "/v1/batches", self.create),
            ("POST", "/v1/batches/{id}/cancel", self.cancel),
        ]

    async def upload(self, request: web.Request) -> web.Response:
        """POST /v1/files: a multipart upload of a batch's requests."""
        if (refused := unauthorized(self.dialect, request)) is not None:
            return refused
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not hasattr(upload, "file") or purpose != "batch":
            return self.dialect.error(400, "expected a multipart upload with a 'file' and purpose 'batch'")
        data = upload.file.read()
        file_id = self.service.new_id("file-sim")
        obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": upload.filename, "purpose": purpose, "status": "processed"}
        self.service.store_file(file_id, data, obj)
        return web.json_response(obj)

    async def file(self, request: web.Request) -> web.Response:
        """GET /v1/files/{id}: a file object."""
        found = self._output(request.match_info["id"])
        return web.json_response(found[1]) if found else self.dialect.error(404, "No such File object")

    async def content(self, request: web.Request) -> web.Response:
        """GET /v1/files/{id}/content: a file's bytes."""
        if (refused := unauthorized(self.dialect, request)) is not None:
            return refused
        found = self._output(request.match_info["id"])
        if found is None:
            return self.dialect.error(404, "No such File object")
        return web.Response(body=found[0], content_type="application/octet-stream")

    def _output(self, file_id: str) -> tuple[bytes, dict] | None:
        """An uploaded file, or a batch's output (file-out-<id>) or error file (file-err-<id>), made on demand."""
        found = self.service.file(file_id)
        if found is not None:
            return found
        for prefix, errors in (("file-out-", False), ("file-err-", True)):
            batch = self.service.find(self.vendor, file_id[len(prefix):]) if file_id.startswith(prefix) else None
            if batch is not None:
                data = "".join(json.dumps(line) + "\n" for line in self._lines(batch, errors)).encode()
                return data, {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                              "filename": f"{file_id}.jsonl", "purpose": "batch_output", "status": "processed"}
        return None

    def _lines(self, batch: Batch, errors: bool) -> list[dict]:
        """The lines of a batch's output file, or (errors) of its error file."""
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
            endpoint = batch.extra.get("endpoint")
            body = (self._embedding(batch, i) if endpoint == embeddings.ENDPOINT
                    else self.service.reply(self.endpoints.get(endpoint, OPENAI), batch, i))
            if (body is None) != errors:
                continue
            if body is None:
                body = {"error": {"message": "simulated batch line error", "type": "server_error", "code": None}}
            lines.append({"id": line_id, "custom_id": custom_id, "error": None,
                          "response": {"status_code": 500 if errors else 200, "request_id": f"req_{i}", "body": body}})
        return lines

    def _embedding(self, batch: Batch, i: int) -> dict | None:
        """The /v1/embeddings reply of item i (the online route's vectors and usage), or None if its line fails."""
        item = embeddings.batch_item(batch, i, self.service.sim.embedding_input_tokens)
        return None if item is None else embeddings.OPENAI.embedding_reply(*item)

    def _object(self, batch: Batch) -> dict:
        """The Batch object."""
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

    async def create(self, request: web.Request) -> web.Response:
        """POST /v1/batches: a batch of an uploaded file's requests."""
        if (refused := unauthorized(self.dialect, request)) is not None:
            return refused
        body = await request.json()
        found = self.service.file(body.get("input_file_id"))
        if found is None:
            return self.dialect.error(400, f"input_file_id {body.get('input_file_id')!r} not found")
        endpoint = body.get("endpoint")
        if endpoint not in self.endpoints or body.get("completion_window") != "24h":
            return self.dialect.error(400, f"endpoint must be one of {sorted(self.endpoints)} and "
                                           "completion_window 24h")
        items, model = [], None
        for number, text in enumerate(found[0].decode().splitlines(), 1):
            if not text.strip():
                continue
            line = json.loads(text)
            if line.get("method") != "POST" or line.get("url") != endpoint:
                return self.dialect.error(400, f"line {number}: method must be POST and url {endpoint}, "
                                               "the batch's endpoint")
            try:
                chat = self.endpoints[endpoint].parse(request, line.get("body"))
            except BadRequest as exc:
                return self.dialect.error(400, f"line {number}: {exc}")
            items.append((line["custom_id"], line["body"], chat))
            model = model or chat.get("model")
        if len({cid for cid, _r, _c in items}) != len(items):
            return self.dialect.error(400, "custom_id values must be unique within a batch")
        metadata = body.get("metadata") or {}
        service = self.service
        batch = service.add(Batch(self.vendor, service.new_id("batch_sim"), items, service.settings, model or "",
                                  tag=metadata.get("llmframe_chunk"),
                                  extra={"endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                                         "completion_window": "24h", "metadata": metadata}))
        return web.json_response(self._object(batch))

    async def get_batch(self, request: web.Request) -> web.Response:
        """GET /v1/batches/{id}."""
        batch = self.service.lookup(self.dialect, self.vendor, request, "No such batch")
        return web.json_response(self._object(batch)) if isinstance(batch, Batch) else batch

    async def cancel(self, request: web.Request) -> web.Response:
        """POST /v1/batches/{id}/cancel: a running batch is cancelling, with no output files yet."""
        batch = self.service.lookup(self.dialect, self.vendor, request, "No such batch")
        if not isinstance(batch, Batch):
            return batch
        if batch.cancel():
            obj = {**self._object(batch), "status": "cancelling", "output_file_id": None, "error_file_id": None}
            return web.json_response(obj)
        return web.json_response(self._object(batch))

    async def list_batches(self, request: web.Request) -> web.Response:
        """GET /v1/batches: newest first."""
        data = [self._object(b) for b in reversed(self.service.listed(self.vendor))]
        return web.json_response({"object": "list", "data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})
