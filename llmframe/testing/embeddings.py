"""Embedding routes of the simulator: OpenAI's POST /v1/embeddings and Gemini's batchEmbedContents / embedContent.

Vectors are deterministic: a hashed bag of the text's words, normalised, so texts that share words are close
and a test of search or de-duplication checks real behaviour. Requests go through the simulator's one
pipeline (key, log, rate limits counted in the inputs' tokens, faults, latency); a request with too many
inputs, or an input past `Simulator.embedding_input_tokens`, is refused with a 400 naming it, as the APIs do.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from typing import Any

import numpy as np
from aiohttp import web

from .answers import tokens
from .gemini_generate import GeminiDialect
from .openai_chat import BadRequest, Dialect

DEFAULT_DIMENSIONS = 256  # a model the table below does not name
DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536,
              "gemini-embedding-001": 3072, "text-embedding-004": 768}
OPENAI_MAX_INPUTS, GEMINI_MAX_INPUTS = 2048, 100
INPUT_TOKENS = 8192  # Simulator.embedding_input_tokens' default: OpenAI's models' limit
_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=2**16)
def _slot(word: str, dimensions: int) -> tuple[int, float]:
    """Where a word adds to a vector, and with which sign."""
    h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return h % dimensions, 1.0 if (h >> 40) & 1 else -1.0


def vector(text: str, dimensions: int) -> np.ndarray:
    """The simulator's embedding of a text: its words hashed into dimensions, normalised to length 1."""
    out = np.zeros(dimensions, dtype=np.float32)
    words = _WORD.findall(text.lower()) or [text]  # no words at all: the text itself is the one "word"
    for word in words:
        i, sign = _slot(word, dimensions)
        out[i] += sign
    norm = float(np.sqrt(out @ out))
    return out / norm if norm else out


def dimensions_of(model: str, asked: Any) -> int:
    """The vectors' length: the one asked for, else the model's."""
    if asked is not None:
        if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
            raise BadRequest(f"Invalid value for 'dimensions': {asked!r}")
        return asked
    return DIMENSIONS.get(model, DEFAULT_DIMENSIONS)


def too_long(inputs: list[str], limit: int | None) -> str | None:
    """The refusal of a request with an input past limit tokens, naming it, as OpenAI's 400 does."""
    if limit is None:
        return None
    for i, text in enumerate(inputs):
        if tokens(text) > limit:
            return (f"This model's maximum context length is {limit} tokens, however you requested "
                    f"{tokens(text)} tokens (input[{i}]). Please reduce your prompt.")
    return None


class OpenAIEmbeddings(Dialect):
    """POST /v1/embeddings, as the openai SDK and llmframe's lean client send it."""

    embeds = True

    def parse(self, request: web.Request, raw: Any) -> dict:
        if not isinstance(raw, dict) or "input" not in raw:
            raise BadRequest("'input' is a required property")
        inputs = raw["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            raise BadRequest("'input' must be a string or a non-empty list of strings")
        if len(inputs) > OPENAI_MAX_INPUTS:
            raise BadRequest(f"'input' holds {len(inputs)} items; at most {OPENAI_MAX_INPUTS} are allowed")
        if any(not t for t in inputs):
            raise BadRequest("'input' cannot contain an empty string")
        if raw.get("encoding_format") not in (None, "float", "base64"):
            raise BadRequest("'encoding_format' must be 'float' or 'base64'")
        model = str(raw.get("model") or "")
        return {"model": model, "messages": [{"role": "user", "content": t} for t in inputs], "inputs": inputs,
                "dimensions": dimensions_of(model, raw.get("dimensions"))}

    def embedding_reply(self, raw: dict, chat: dict, vectors: list[np.ndarray], prompt_tokens: int) -> dict:
        as_text = raw.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if as_text else v.tolist()}
                for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": chat["model"],
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def _part_words(part: dict) -> str:
    """A Gemini part as words: its text, or for an image or document (gemini-embedding-2) one word naming its bytes,
    so the same picture embeds the same and a picture beside a caption shares the caption's words."""
    blob = part.get("inlineData") or part.get("inline_data") or part.get("fileData") or part.get("file_data")
    if isinstance(blob, dict):
        data = str(blob.get("data") or blob.get("fileUri") or blob.get("file_uri") or "")
        return "media" + hashlib.blake2b(data.encode(), digest_size=6).hexdigest()
    return str(part.get("text", ""))


class GeminiEmbeddings(GeminiDialect):
    """POST /v1beta/models/{model}:batchEmbedContents (what google-genai's embed_content sends) and :embedContent;
    text parts, and images and documents (inlineData, fileData) for a multimodal model."""

    embeds = True

    def parse(self, request: web.Request, raw: Any) -> dict:
        if not isinstance(raw, dict):
            raise BadRequest("Invalid JSON payload received: the body must be an object.")
        single = "requests" not in raw
        requests = [raw] if single else raw["requests"]
        if not isinstance(requests, list) or not requests:
            raise BadRequest("* BatchEmbedContentsRequest.requests: requests is not specified")
        if len(requests) > GEMINI_MAX_INPUTS:
            raise BadRequest(f"* BatchEmbedContentsRequest.requests: at most {GEMINI_MAX_INPUTS} requests can be "
                             "in one batch")
        model = request.match_info.get("model", "")
        inputs, asked = [], None
        for r in requests:
            if not isinstance(r, dict) or not isinstance(r.get("content"), dict):
                raise BadRequest("* EmbedContentRequest.content: content is not specified")
            parts = r["content"].get("parts")
            text = " ".join(_part_words(p) for p in parts if isinstance(p, dict)) if isinstance(parts, list) else ""
            if not text:
                raise BadRequest("* EmbedContentRequest.content: contents must not be empty")
            inputs.append(text)
            asked = r.get("outputDimensionality", asked)
        return {"model": model, "messages": [{"role": "user", "content": t} for t in inputs], "inputs": inputs,
                "dimensions": dimensions_of(model, asked), "single": single}

    def embedding_reply(self, raw: dict, chat: dict, vectors: list[np.ndarray], prompt_tokens: int) -> dict:
        embeddings = [{"values": v.tolist()} for v in vectors]
        return {"embedding": embeddings[0]} if chat["single"] else {"embeddings": embeddings}


OPENAI = OpenAIEmbeddings()
GEMINI = GeminiEmbeddings()
ENDPOINT = "/v1/embeddings"
ROUTES = [(ENDPOINT, OPENAI)] + [
    (f"/{version}/models/{{model:[^/:]+}}:{method}", GEMINI)
    for version in ("v1beta", "v1") for method in ("batchEmbedContents", "embedContent")
]


def embedded(chat: dict, limit: int | None) -> tuple[list[np.ndarray], str | None]:
    """The vectors of a parsed embedding request, or the refusal of an input that is too long."""
    problem = too_long(chat["inputs"], limit)
    if problem is not None:
        return [], problem
    return [vector(t, chat["dimensions"]) for t in chat["inputs"]], None


def batch_item(batch: Any, i: int, limit: int | None) -> tuple[dict, dict, list[np.ndarray], int] | None:
    """An embedding batch's item i as the online route answers it: (raw, chat, vectors, tokens); None if its line
    fails (a simulated line error, or an input past limit)."""
    custom_id, raw, chat = batch.items[i]
    if batch.failed(custom_id):
        return None
    vectors, problem = embedded(chat, limit)
    return None if problem is not None else (raw, chat, vectors, sum(map(tokens, chat["inputs"])))
