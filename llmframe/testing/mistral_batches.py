"""Mistral's files and batch jobs (/mistral/v1/files, /mistral/v1/batch/jobs), as the mistralai SDK speaks them."""

from __future__ import annotations

import json
import time

from aiohttp import web

from .batches import Batch, Handler, VendorBatches, unauthorized
from .mistral import MISTRAL, PREFIX
from .openai_chat import BadRequest

_STATUS = {"running": "RUNNING", "completed": "SUCCESS", "expired": "TIMEOUT_EXCEEDED", "cancelled": "CANCELLED"}


class MistralBatches(VendorBatches):
    """Mistral's batch and file routes of a BatchService."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("POST", PREFIX + "/v1/files", self.upload), ("GET", PREFIX + "/v1/files/{id}/content", self.content),
                ("POST", PREFIX + "/v1/batch/jobs", self.create), ("GET", PREFIX + "/v1/batch/jobs", self.list_jobs),
                ("GET", PREFIX + "/v1/batch/jobs/{id}", self.get_job),
                ("POST", PREFIX + "/v1/batch/jobs/{id}/cancel", self.cancel)]

    async def upload(self, request: web.Request) -> web.Response:
        """POST /v1/files: a multipart upload (purpose "batch")."""
        if (refused := unauthorized(MISTRAL, request)) is not None:
            return refused
        form = await request.post()
        upload = form.get("file")
        if not hasattr(upload, "file") or form.get("purpose") != "batch":
            return MISTRAL.error(422, "expected a multipart upload with a 'file' and purpose 'batch'")
        data = upload.file.read()
        file_id = self.service.new_id("mistral-file")
        obj = {"id": file_id, "object": "file", "size_bytes": len(data), "bytes": len(data),
               "created_at": int(time.time()), "filename": upload.filename, "purpose": "batch",
               "sample_type": "batch_request", "source": "upload", "num_lines": data.count(b"\n")}
        self.service.store_file(file_id, data, obj)
        return web.json_response(obj)

    async def content(self, request: web.Request) -> web.Response:
        """GET /v1/files/{id}/content: an uploaded file, or a job's output (out-<id>) or error file (err-<id>)."""
        if (refused := unauthorized(MISTRAL, request)) is not None:
            return refused
        file_id = request.match_info["id"]
        for prefix, errors in (("out-", False), ("err-", True)):
            if file_id.startswith(prefix) and (batch := self.service.find("mistral", file_id[len(prefix):])):
                lines = self._lines(batch, errors)
                return web.Response(body="".join(json.dumps(line) + "\n" for line in lines).encode(),
                                    content_type="application/octet-stream")
        found = self.service.file(file_id)
        if found is None:
            return MISTRAL.error(404, "File not found")
        return web.Response(body=found[0], content_type="application/octet-stream")

    def _lines(self, batch: Batch, errors: bool) -> list[dict]:
        _state, done = batch.state()
        lines = []
        for i, (custom_id, _raw, _chat) in enumerate(batch.items[:done]):
            body = self.service.reply(MISTRAL, batch, i)
            if (body is None) != errors:
                continue
            response = {"status_code": 200, "body": body} if body is not None else {
                "status_code": 500, "body": {"object": "error", "message": "simulated batch line error"}}
            lines.append({"id": f"{batch.id}-{i}", "custom_id": custom_id, "response": response,
                          "error": None if body is not None else {"message": "simulated batch line error"}})
        return lines

    def _object(self, batch: Batch) -> dict:
        state, _done = batch.state()
        succeeded, failed, finished = batch.counts()
        ended = state != "running"
        return {"id": batch.id, "object": "batch", "input_files": batch.extra["input_files"],
                "endpoint": batch.extra["endpoint"], "model": batch.model, "errors": [],
                "status": _STATUS[state], "created_at": int(batch.created_at), "total_requests": len(batch.items),
                "completed_requests": finished, "succeeded_requests": succeeded, "failed_requests": failed,
                "metadata": batch.extra["metadata"], "output_file": f"out-{batch.id}" if ended else None,
                "error_file": f"err-{batch.id}" if ended and failed else None}

    async def create(self, request: web.Request) -> web.Response:
        """POST /v1/batch/jobs: a job over uploaded files, the model named once for every line."""
        if (refused := unauthorized(MISTRAL, request)) is not None:
            return refused
        body = await request.json()
        if body.get("endpoint") != "/v1/chat/completions" or not body.get("model"):
            return MISTRAL.error(422, "endpoint must be /v1/chat/completions, with a model")
        items = []
        for file_id in body.get("input_files") or []:
            found = self.service.file(file_id)
            if found is None:
                return MISTRAL.error(404, f"input file {file_id!r} not found")
            for number, text in enumerate(found[0].decode().splitlines(), 1):
                if not text.strip():
                    continue
                line = json.loads(text)
                raw = {**line.get("body", {}), "model": body["model"]}
                try:
                    chat = MISTRAL.parse(request, raw)
                except BadRequest as exc:
                    return MISTRAL.error(422, f"line {number}: {exc}")
                items.append((str(line["custom_id"]), raw, chat))
        metadata = body.get("metadata") or {}
        service = self.service
        batch = service.add(Batch("mistral", service.new_id("mistral-job"), items, service.settings, body["model"],
                                  tag=metadata.get("llmframe_chunk"),
                                  extra={"endpoint": body["endpoint"], "input_files": body["input_files"],
                                         "metadata": metadata, "file": True}))
        return web.json_response(self._object(batch))

    async def get_job(self, request: web.Request) -> web.Response:
        batch = self.service.lookup(MISTRAL, "mistral", request, "Batch job not found")
        return web.json_response(self._object(batch)) if isinstance(batch, Batch) else batch

    async def list_jobs(self, request: web.Request) -> web.Response:
        if (refused := unauthorized(MISTRAL, request)) is not None:
            return refused
        data = [self._object(b) for b in reversed(self.service.listed("mistral"))]
        return web.json_response({"object": "list", "total": len(data), "data": data})

    async def cancel(self, request: web.Request) -> web.Response:
        batch = self.service.lookup(MISTRAL, "mistral", request, "Batch job not found")
        if not isinstance(batch, Batch):
            return batch
        batch.cancel()
        return web.json_response(self._object(batch))
