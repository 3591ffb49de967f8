"""Anthropic's Message Batches API (/v1/messages/batches), as anthropic's client.messages.batches speaks it."""

from __future__ import annotations

import json
import time

from aiohttp import web

from .anthropic_messages import ANTHROPIC
from .batches import Batch, Handler, VendorBatches, iso_time, unauthorized
from .openai_chat import BadRequest


class AnthropicBatches(VendorBatches):
    """The Anthropic batch routes of a BatchService."""

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) of each route."""
        return [
            ("POST", "/v1/messages/batches", self.create),
            ("GET", "/v1/messages/batches/{id}", self.get_batch),
            ("POST", "/v1/messages/batches/{id}/cancel", self.cancel),
            ("GET", "/v1/messages/batches/{id}/results", self.results),
        ]

    def _object(self, request: web.Request, batch: Batch) -> dict:
        """The MessageBatch object."""
        state, done = batch.state()
        succeeded, failed, _ = batch.counts()
        ended = state != "running"
        rest = len(batch.items) - done
        counts = {"processing": 0 if ended else rest, "succeeded": succeeded if ended else 0,
                  "errored": failed if ended else 0, "canceled": rest if state == "cancelled" else 0,
                  "expired": rest if state == "expired" else 0}
        base = f"{request.scheme}://{request.host}"
        return {"id": batch.id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
                "request_counts": counts, "created_at": iso_time(batch.created_at),
                "expires_at": iso_time(batch.created_at + 86400), "ended_at": iso_time(time.time()) if ended else None,
                "cancel_initiated_at": iso_time(time.time()) if batch.cancelled is not None else None,
                "archived_at": None,
                "results_url": f"{base}/v1/messages/batches/{batch.id}/results" if ended else None}

    async def create(self, request: web.Request) -> web.Response:
        """POST /v1/messages/batches: a batch of the requests in the body."""
        if (refused := unauthorized(ANTHROPIC, request)) is not None:
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
        service = self.service
        batch = service.add(Batch("anthropic", service.new_id("msgbatch_sim"), items, service.settings,
                                  items[0][2].get("model", "")))
        return web.json_response(self._object(request, batch))

    async def get_batch(self, request: web.Request) -> web.Response:
        """GET /v1/messages/batches/{id}."""
        batch = self.service.lookup(ANTHROPIC, "anthropic", request, "batch not found")
        return web.json_response(self._object(request, batch)) if isinstance(batch, Batch) else batch

    async def cancel(self, request: web.Request) -> web.Response:
        """POST /v1/messages/batches/{id}/cancel: a running batch is canceling, with no results yet."""
        batch = self.service.lookup(ANTHROPIC, "anthropic", request, "batch not found")
        if not isinstance(batch, Batch):
            return batch
        if batch.cancel():
            return web.json_response({**self._object(request, batch), "processing_status": "canceling",
                                      "results_url": None, "ended_at": None})
        return web.json_response(self._object(request, batch))

    async def results(self, request: web.Request) -> web.Response:
        """GET /v1/messages/batches/{id}/results: one JSON line per request, once the batch has ended."""
        batch = self.service.lookup(ANTHROPIC, "anthropic", request, "batch not found")
        if not isinstance(batch, Batch):
            return batch
        state, done = batch.state()
        if state == "running":
            return ANTHROPIC.error(400, "the batch is still processing; results are available once it has ended")
        out = []
        for i, (custom_id, _raw, _chat) in enumerate(batch.items):
            if i >= done:
                result: dict = {"type": "canceled" if state == "cancelled" else "expired"}
            elif (message := self.service.reply(ANTHROPIC, batch, i)) is None:
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "api_error", "message": "simulated batch line error"}}}
            else:
                result = {"type": "succeeded", "message": message}
            out.append(json.dumps({"custom_id": custom_id, "result": result}) + "\n")
        return web.Response(body="".join(out).encode(), content_type="application/binary")
