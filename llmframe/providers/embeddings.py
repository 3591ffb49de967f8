"""What the embedding providers share: the models they know (dimensions), replies read into float32 matrices
with every field checked, and inputs cut to a model's limit (truncate=True)."""

from __future__ import annotations

import base64
import binascii
import functools
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import constants
from ..errors import ConfigError, ProviderError
from ..plan.build import input_chars
from ..plan.request import Embedded
from . import replies

# The official endpoints' embedding models: the most dimensions, and whether they can return fewer.
OPENAI_MODELS = {"text-embedding-3-small": (1536, True), "text-embedding-3-large": (3072, True),
                 "text-embedding-ada-002": (1536, False)}
GEMINI_MODELS = {"gemini-embedding-001": (3072, True), "gemini-embedding-2": (3072, True),
                 "text-embedding-004": (768, True), "embedding-001": (768, False)}
MEDIA_MODEL = "gemini:gemini-embedding-2"  # the one named where media are given to a model of text only


def known_dimensions(model: Any) -> int | None:
    """How long the vectors of an official model are by default ("openai:text-embedding-3-small": 1536); None
    for a model not in the tables."""
    if not isinstance(model, str):
        return None
    prefix, _, name = model.partition(":")
    known = {"openai": OPENAI_MODELS, "gemini": GEMINI_MODELS}.get(prefix, {})
    return known[name][0] if name in known else None


def is_multimodal_gemini(model: str) -> bool:
    """A Gemini model that embeds media with text: a "gemini" model but the text-only gemini-embedding-001 and -exp
    (google-genai's t_is_multimodal_embedding_model, which decides how its embed_content sends the contents)."""
    name = model.rsplit("/", 1)[-1]
    return "gemini" in name and not name.startswith(("gemini-embedding-001", "gemini-embedding-exp"))


def is_embedding_name(model: str) -> bool:
    """True for a model whose name says it embeds (text-embedding-3-small, gemini-embedding-001, bge-embed...)."""
    return "embed" in model.lower()


def check_model(provider: str, model: str, dimensions: int | None, known: Mapping[str, tuple[int, bool]],
                example: str) -> None:
    """ConfigError for a chat model asked to embed, or for dimensions the model cannot give."""
    if not is_embedding_name(model):
        raise ConfigError(f"{provider}:{model} is a chat model, not an embedding model: use df.llm.generate for it, "
                          f"or embed with an embedding model such as model={example!r}")
    if dimensions is None or model not in known:
        return
    most, shortens = known[model]
    if not shortens:
        raise ConfigError(f"{provider}:{model} always returns {most} dimensions and cannot take dimensions=; drop "
                          f"it, or use a model that can shorten its vectors such as {example!r}")
    if dimensions > most:
        raise ConfigError(f"{provider}:{model} returns at most {most} dimensions, got dimensions={dimensions}")


def refuse_embedding_model(provider: str, model: str) -> None:
    """ConfigError for generate on an embedding model."""
    if is_embedding_name(model):
        raise ConfigError(f"{provider}:{model} is an embedding model, which cannot answer prompts: use "
                          f"df.llm.embed(..., model={provider + ':' + model!r}) for vectors, or a chat model here")


def cut(texts: list[str], tokens: int | None, encoding: Any = None) -> list[str]:
    """Inputs cut to tokens tokens: exactly, by the model's tiktoken encoding where one is given; else to about
    that many (characters / 4, the estimate the plan refuses long inputs by). Media rows (messages) stay whole."""
    if tokens is None:
        return texts
    if not all(isinstance(t, str) for t in texts):
        return [cut([t], tokens, encoding)[0] if isinstance(t, str) else t for t in texts]
    if encoding is not None:
        long = [i for i, t in enumerate(texts) if len(t) > tokens]  # fewer characters than tokens: short enough
        if not long:
            return texts
        out = list(texts)
        for i, ids in zip(long, encoding.encode_ordinary_batch([texts[i] for i in long])):
            if len(ids) > tokens:
                out[i] = encoding.decode(ids[:tokens])
        return out
    limit = tokens * constants.CHARS_PER_TOKEN
    return [t if len(t) <= limit else t[:limit] for t in texts]


def _vector(value: Any, where: str) -> np.ndarray:
    """One embedding from a reply: a list of numbers, or base64 of little-endian float32 (encoding_format)."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise replies.Malformed(where, value) from None
        if len(raw) % 4:
            raise replies.Malformed(where, value, "base64 of a length that is no float32 vector's")
        return np.frombuffer(raw, dtype="<f4")
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise replies.Malformed(where, value)
    return np.asarray(value, dtype=np.float32)


def matrix(vectors: list[np.ndarray], inputs: int, headers: Mapping | None) -> np.ndarray:
    """The reply's vectors as one (inputs, dimensions) float32 matrix; ProviderError (retryable) if they do not fit."""
    if len(vectors) != inputs:
        raise ProviderError(f"malformed response: {len(vectors)} vectors for {inputs} inputs", retryable=True,
                            headers=headers)
    lengths = {len(v) for v in vectors}
    if len(lengths) > 1 or 0 in lengths:
        raise ProviderError(f"malformed response: vectors of lengths {sorted(lengths)}", retryable=True,
                            headers=headers)
    out = np.stack(vectors).astype(np.float32, copy=False) if vectors else np.zeros((0, 0), np.float32)
    if not np.isfinite(out).all():
        raise ProviderError("malformed response: a vector holds NaN or infinity", retryable=True, headers=headers)
    return out


def openai_reply(body: Any, inputs: int, headers: Mapping | None) -> Embedded:
    """An OpenAI /embeddings reply: {"data": [{"index", "embedding"}], "usage": {"prompt_tokens"}}."""
    try:
        data = replies.items(replies.obj(body, "the reply").get("data"), "data")
        usage = replies.obj(body.get("usage"), "usage")
        tokens = replies.count(usage.get("prompt_tokens", usage.get("total_tokens")), "usage.prompt_tokens")
        fast = _base64_in_order(data, inputs)
        if fast is not None:
            return Embedded(fast, tokens, headers)
        found: dict[int, np.ndarray] = {}
        for n, item in enumerate(data):
            item = replies.obj(item, f"data[{n}]")
            index = item.get("index", n)
            if isinstance(index, bool) or not isinstance(index, int):
                raise replies.Malformed(f"data[{n}].index", index)
            found[index] = _vector(item.get("embedding"), f"data[{n}].embedding")
    except replies.Malformed as exc:
        raise ProviderError(f"malformed response: {exc}", retryable=True, headers=headers) from None
    return Embedded(matrix([found[i] for i in sorted(found)], inputs, headers), tokens, headers)


# Strict: a reply's stray character is a malformed reply, not a silently different vector.
_b64 = (functools.partial(binascii.a2b_base64, strict_mode=True) if sys.version_info >= (3, 11)
        else functools.partial(base64.b64decode, validate=True))


def _base64_in_order(data: list, inputs: int) -> np.ndarray | None:
    """The usual reply (every input's vector, in order, base64 of one length) decoded at once into one matrix;
    None for any other reply, which the general path reads and checks."""
    if len(data) != inputs or not inputs:
        return None
    try:
        texts = [item["embedding"] for item in data]
        if [item["index"] for item in data] != list(range(inputs)):
            return None
        if len({len(t) for t in texts}) != 1 or not all(type(t) is str for t in texts):
            return None
        raw = b"".join(list(map(_b64, texts)))
    except (KeyError, TypeError, binascii.Error, ValueError):
        return None
    if len(raw) % (4 * inputs):
        return None
    out = np.frombuffer(raw, dtype="<f4").reshape(inputs, -1)
    if not out.shape[1] or not np.isfinite(out).all():
        return None
    return out


def estimated_tokens(texts: list[str]) -> int:
    """Tokens of inputs whose reply counts none (Gemini's API): characters / 4, as every estimate here."""
    return sum(-(-input_chars(t) // constants.CHARS_PER_TOKEN) for t in texts)
