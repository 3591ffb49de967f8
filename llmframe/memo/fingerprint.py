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


def whole(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (a copy only where the column is in several chunks)."""
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def chunks(columns: Sequence[pa.Array], rows: int, size: int, salt: bytes) -> list[bytes]:
    """The digest of every `size`-row chunk of these columns (the last may be shorter), salted with the call's."""
    out = []
    for start in range(0, rows, size):
        stop = min(start + size, rows)
        h = _hasher(salt)
        h.update((stop - start).to_bytes(8, "little"))
        for array in columns:
            _update(h, array, start, stop)
        out.append(h.digest())
    return out


def _update(h, array: pa.Array, start: int, stop: int) -> None:
    """Hash rows [start, stop) of one column: its type, validity, then its values' bytes."""
    kind = array.type
    if pa.types.is_dictionary(kind):  # categories: the values, whatever their codes (IPC would leave out the dictionary)
        _update(h, array.slice(start, stop - start).dictionary_decode(), 0, stop - start)
        return
    h.update(str(kind).encode())
    if array.null_count:
        valid = pc.is_valid(array.slice(start, stop - start)).to_numpy(zero_copy_only=False)
        h.update(valid.tobytes())
    offset = array.offset
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        wide = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
        buffers = array.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[offset + start: offset + stop + 1]
        h.update((offsets - offsets[0]).tobytes())
        if buffers[2] is not None:
            h.update(memoryview(buffers[2])[int(offsets[0]): int(offsets[-1])])
    elif (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind)) \
            and kind.bit_width % 8 == 0:
        width = kind.bit_width // 8
        h.update(memoryview(array.buffers()[1])[(offset + start) * width: (offset + stop) * width])
    else:  # booleans, dictionaries, nested types: their IPC form, which writes only the slice's bytes
        batch = pa.RecordBatch.from_arrays([array.slice(start, stop - start)], ["c"])
        h.update(memoryview(batch.serialize()))
