"""Fingerprints of a call's input, a chunk of rows at a time, hashed from the Arrow buffers of the columns it reads.

Equal bytes give equal values, so equal prompts: a chunk whose fingerprint matches one the memo holds would render
and key to the same requests. Unequal bytes may still hold equal values (the bytes under a null, NaN payloads): such
a chunk goes through the per-row path, which answers it from the per-row cache; the memo is only ever conservative.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_DIGEST = 16
try:  # xxh3: ~25x blake2b's speed here (7 GB/s against 0.26), most of a memo hit's time otherwise
    import xxhash

    def _hasher(salt: bytes):
        h = xxhash.xxh3_128()
        h.update(salt)
        return h

    HASH = "xxh3_128"
except ImportError:  # the memo still works, slower: the name goes into every fingerprint, so the two never mix
    def _hasher(salt: bytes):
        return hashlib.blake2b(salt, digest_size=_DIGEST)

    HASH = "blake2b"


def call_digest(*parts: bytes | str) -> bytes:
    """One digest of many parts, each length-prefixed so that no two sequences of parts collide."""
    h = hashlib.blake2b(digest_size=_DIGEST)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def chunked(column: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """The column as a chunked array, as it is (never combined: that would copy a whole input column)."""
    return column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])


def chunks(columns: Sequence[pa.ChunkedArray], rows: int, size: int, salt: bytes) -> list[bytes]:
    """The digest of every `size`-row chunk of these columns (the last may be shorter), salted with the call's.

    What is hashed does not depend on how a column is split into Arrow chunks: validity, then lengths (not
    offsets), then the values' bytes, each stream piece after piece.
    """
    out = []
    for start in range(0, rows, size):
        stop = min(start + size, rows)
        h = _hasher(salt)
        h.update((stop - start).to_bytes(8, "little"))
        for column in columns:
            h.update(str(column.type).encode())
            pieces = [_decoded(p) for p in column.slice(start, stop - start).chunks if len(p)]
            if any(p.null_count for p in pieces):
                for p in pieces:
                    h.update(pc.is_valid(p).to_numpy(zero_copy_only=False).tobytes())
            streams = [_streams(p) for p in pieces]
            for k in range(2):
                for found in streams:
                    if found[k] is not None:
                        h.update(found[k])
        out.append(h.digest())
    return out


def _decoded(array: pa.Array) -> pa.Array:
    """Categories as their values, whatever their codes (IPC would leave out the dictionary)."""
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _streams(array: pa.Array) -> tuple:
    """(lengths or None, the values' bytes) of one piece of a column."""
    kind, rows, offset = array.type, len(array), array.offset
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        wide = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
        buffers = array.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[offset: offset + rows + 1]
        data = memoryview(buffers[2])[int(offsets[0]): int(offsets[-1])] if buffers[2] is not None else b""
        return np.diff(offsets).tobytes(), data
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind)) \
            and kind.bit_width % 8 == 0:
        width = kind.bit_width // 8
        return None, memoryview(array.buffers()[1])[offset * width: (offset + rows) * width]
    # Booleans, nested types: their IPC form, which writes only this piece's bytes (but depends on the pieces:
    # a frame split otherwise misses the memo, and the per-row path answers it).
    return None, memoryview(pa.RecordBatch.from_arrays([array], ["c"]).serialize())
