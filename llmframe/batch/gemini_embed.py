"""Embeddings through Gemini's batch API (client.aio.batches.create_embeddings, models/{model}:asyncBatchEmbedContent):
one {"key", "request"} line per row in an uploaded JSONL file, so every answer comes back under its row's key
(the SDK's inlined form takes one list of contents and answers by position only)."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

from ..plan.build import input_text
from ..plan.request import Response
from ..providers import embeddings, media
from ..providers.gemini import media_part, to_contents
from .base import LineBuilder

_MARK = '"request":{"content":'  # what only an embedding line holds


def line_builder(provider: Any, settings: dict) -> LineBuilder:
    """One line per row: its text as the content, the run's task type and dimensions beside it."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    extra = {}
    if "task_type" in settings:
        extra["taskType"] = settings["task_type"]
    if "dimensions" in settings:
        extra["outputDimensionality"] = int(settings["dimensions"])
    tail = ("," + dumps(extra)[1:] if extra else "}") + "}"
    limit = provider.embedding_input_tokens if settings.get("truncate") else None

    def line(key: str, messages: list[dict]) -> str:
        text = embeddings.cut([input_text(messages)], limit)[0]
        if not isinstance(text, str):  # a multimodal model's media row: its text and media parts, inline
            _system, contents = to_contents(media.messages_now(messages, media_part))
            parts = [p.model_dump(exclude_none=True, mode="json") for c in contents for p in c.parts or ()]
            return '{"key":' + dumps(key) + "," + _MARK + dumps({"parts": parts}) + tail
        return '{"key":' + dumps(key) + "," + _MARK + '{"parts":[{"text":' + dumps(text) + "}]}" + tail

    return line


def is_embedding(line: str) -> bool:
    """True for a line line_builder made."""
    return _MARK in line[:200]


async def create(adapter: Any, uid: str, file_name: str) -> str:
    """Start the embedding job on the uploaded lines (the adapter's create maps its errors); its name."""
    with warnings.catch_warnings():  # "experimental" in google-genai: said once in the README, not per job
        warnings.simplefilter("ignore")
        job = await adapter.client.aio.batches.create_embeddings(
            model=adapter.provider.model, src={"file_name": file_name}, config={"display_name": uid})
    return job.name


def answer(response: dict) -> Response:
    """One response line's vector and tokens; TypeError (read_line's malformed answer) for anything else."""
    values = (response.get("embedding") or {}).get("values")
    count = response.get("tokenCount") or 0
    if not isinstance(values, list) or not values or not all(type(x) in (int, float) for x in values):
        raise TypeError("an embedding that is no list of numbers")
    if type(count) is not int or not 0 <= count < 2**26:
        raise TypeError(f"a token count of the wrong type ({count!r})")
    vector = np.asarray(values, dtype=np.float32)
    if not np.isfinite(vector).all():
        raise TypeError("an embedding holding NaN or infinity")
    return Response(None, count, 0, None, batch=True, vector=vector)
