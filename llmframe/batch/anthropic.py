"""Anthropic's Message Batches: the requests go in the create call itself, the results come back as JSONL."""

from __future__ import annotations

import json

import anthropic

from ..providers.anthropic import finish_reason, message_params
from ..plan.request import Response
from ..providers import media, replies
from .base import Adapter, LineBuilder, Status, error_text, json_lines, read_line


class AnthropicBatches(Adapter):
    """client.messages.batches.create/retrieve/cancel/results."""

    name = "anthropic"

    def line_builder(self, params: dict) -> LineBuilder:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        model = self.provider.model

        def line(key: str, messages: list[dict]) -> str:
            if media.has_media(messages):  # images and PDFs: base64 blocks in the request
                messages = media.messages_now(messages, media.anthropic_part)
            named, extra = message_params(messages, params)
            return dumps({"custom_id": key, "params": {"model": model, **named, **extra}})

        return line

    async def create(self, uid: str, lines: list[str]) -> str:
        # Message Batches take no metadata: uid lives only in our state file.
        with self.creating(), self.provider.stainless_errors(anthropic):
            batch = await self.client.messages.batches.create(requests=[json.loads(line) for line in lines])
        return batch.id

    async def poll(self, batch_id: str) -> Status:
        with self.provider.stainless_errors(anthropic):
            batch = await self.client.messages.batches.retrieve(batch_id)
        counts = batch.request_counts
        total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
        return Status(batch.processing_status, batch.processing_status == "ended", total - counts.processing)

    async def results(self, batch_id: str) -> dict[str, Response]:
        with self.provider.stainless_errors(anthropic):
            async with self.client.messages.batches.with_streaming_response.results(batch_id) as raw:
                data = await raw.read()
        return parse_results(data)

    async def cancel(self, batch_id: str) -> None:
        with self.provider.stainless_errors(anthropic):
            await self.client.messages.batches.cancel(batch_id)


_NOT_RUN = {"canceled": "the batch was cancelled before this request ran",
            "expired": "the batch expired before this request ran"}


def parse_results(data: bytes | str) -> dict[str, Response]:
    """Result lines -> answers and per-request errors, by custom id."""
    found: dict[str, Response] = {}
    for line in json_lines(data):
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            continue  # not one of our requests: its row stays unanswered, and says so
        result = line.get("result") if isinstance(line.get("result"), dict) else {}
        kind = result.get("type")
        if kind == "succeeded":
            message = result.get("message") or {}
            found[line["custom_id"]] = read_line(lambda: replies.anthropic(message, None, finish_reason))
        elif kind == "errored":
            found[line["custom_id"]] = Response.failure(error_text(result.get("error") or "errored"))
        else:
            found[line["custom_id"]] = Response.failure(_NOT_RUN.get(kind, f"no answer ({kind})"))
    return found
