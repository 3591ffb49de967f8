"""A cached embedding in binary: a 32-byte header, the vector's little-endian float32 numbers, then the model.

Values of one run have one length, so a chunk of them is read as one numpy structured array: the vectors go
into the run's matrix in one copy, with no text parsed or decoded. Older values (JSON texts,
'["<base64>",tokens,...]') still read: they are str, these are bytes.

    magic b"LFv\\x01" | dimensions u32 | input tokens i32 | flags u32 (1: batch) | created f64 | latency f64 (NaN:
    unknown) | dimensions x f32 | model, UTF-8
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAGIC = b"LFv\x01"
BATCH = 1  # flags: answered by a provider's batch API
_HEADER = [("magic", "S4"), ("dimensions", "<u4"), ("tokens", "<i4"), ("flags", "<u4"), ("created", "<f8"),
           ("latency", "<f8")]
HEADER_BYTES = 32


def layout(dimensions: int, model_bytes: int) -> np.dtype:
    """The structured dtype of one value of this many dimensions and model name bytes."""
    return np.dtype([*_HEADER, ("vector", "<f4", (dimensions,)), ("model", f"S{model_bytes}")])


def encode(vectors: np.ndarray, tokens: Sequence[int] | np.ndarray, latency: float | None, model: str,
           created: float, *, batch: bool = False) -> list[bytes]:
    """One value per row of vectors (an (n, dimensions) float32 matrix), made in one pass."""
    name = model.encode()
    n, dimensions = vectors.shape
    kind = layout(dimensions, len(name))
    out = np.zeros(n, dtype=kind)
    out["magic"], out["dimensions"], out["tokens"] = MAGIC, dimensions, tokens
    out["flags"], out["created"] = BATCH if batch else 0, created
    out["latency"] = np.nan if latency is None else latency
    out["vector"], out["model"] = vectors, name
    raw, size = out.tobytes(), kind.itemsize
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def is_value(value: object) -> bool:
    """True for a value encode() wrote (by its type and first bytes)."""
    return isinstance(value, bytes) and value[:4] == MAGIC and len(value) > HEADER_BYTES


def read(values: Sequence[bytes]) -> np.ndarray | None:
    """Values of one length as one structured array (a view of their bytes, joined); None unless every one is
    a well-formed value of the same dimensions and model length (the caller then reads them one by one)."""
    first = values[0]
    if not is_value(first):
        return None
    dimensions = int.from_bytes(first[4:8], "little")
    name = len(first) - HEADER_BYTES - 4 * dimensions
    if name <= 0 or any(len(v) != len(first) for v in values):
        return None
    rows = np.frombuffer(b"".join(values), dtype=layout(dimensions, name))
    if not ((rows["magic"] == MAGIC).all() and (rows["dimensions"] == dimensions).all()):
        return None
    return rows


def meta(value: bytes) -> tuple[str, float] | None:
    """(model, created) of one value, or None if it is not one (stats, pruning, the shared store's columns)."""
    if not is_value(value):
        return None
    dimensions = int.from_bytes(value[4:8], "little")
    start = HEADER_BYTES + 4 * dimensions
    if len(value) <= start:
        return None
    try:
        model = value[start:].decode()
    except UnicodeDecodeError:
        return None
    return model, float(np.frombuffer(value, dtype="<f8", count=1, offset=16)[0])
