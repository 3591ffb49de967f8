"""An embedding run's answers: one float32 row per distinct request in one matrix (the vector column's memory),
and the cache's texts of vectors read back into it."""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import sys
from collections.abc import Sequence

import numpy as np

from ..plan import vector_value
from ..plan.request import loads

# A cached vector's text decoded strictly: a damaged one is a miss (asked again), never a different vector.
_b64 = (functools.partial(binascii.a2b_base64, strict_mode=True) if sys.version_info >= (3, 11)
        else functools.partial(base64.b64decode, validate=True))


class Vectors:
    """An embedding run's answers: one float32 row per distinct request, in one matrix made on the first answer.

    The matrix is the vector column's own memory: the collector wraps it in Arrow without a copy.
    """

    def __init__(self, size: int):
        self.size = size
        self.matrix: np.ndarray | None = None

    @property
    def dimensions(self) -> int | None:
        return None if self.matrix is None else self.matrix.shape[1]

    def _fits(self, length: int) -> str | None:
        if self.matrix is None:
            self.matrix = np.zeros((self.size, length), dtype=np.float32)
            return None
        if length != self.matrix.shape[1]:
            return f"malformed response: a vector of {length} numbers, where the others have {self.matrix.shape[1]}"
        return None

    def put(self, j: int, vector) -> str | None:
        """Store request j's vector; the problem, if it cannot be stored (no vector, another length)."""
        if vector is None:
            return "malformed response: no vector"
        vector = np.asarray(vector, dtype=np.float32)
        problem = self._fits(vector.shape[-1])
        if problem is None:
            self.matrix[j] = vector
        return problem

    def put_many(self, positions: np.ndarray, vectors: np.ndarray) -> str | None:
        """Store the rows of vectors at positions; the problem, if they cannot be stored (another length)."""
        problem = self._fits(vectors.shape[1])
        if problem is None:
            self.matrix[positions] = vectors
        return problem

    def put_encoded(self, positions: np.ndarray, texts: list) -> np.ndarray:
        """Store cached vectors of earlier versions (base64 float32 texts); a mask of those that do not fit."""
        lengths = np.fromiter((len(t) if isinstance(t, str) else 0 for t in texts), dtype=np.int64, count=len(texts))
        bad = lengths == 0
        if bad.all():
            return bad
        common = np.bincount(lengths[~bad]).argmax()  # one length, the usual case: decoded in one call
        if self._fits((int(common) // 4 * 3 - _padding(texts, lengths, common)) // 4) is not None:
            return np.ones(len(texts), dtype=bool)
        bad |= lengths != common
        good = np.flatnonzero(~bad)
        try:
            raw = b"".join(list(map(_b64, [texts[k] for k in good.tolist()])))
        except (binascii.Error, ValueError):  # a damaged value (rare): found one by one, asked again
            for k in good.tolist():
                try:
                    self.matrix[positions[k]] = np.frombuffer(_b64(texts[k]), dtype="<f4")
                except (binascii.Error, ValueError):
                    bad[k] = True
            return bad
        self.matrix[positions[good]] = np.frombuffer(raw, dtype="<f4").reshape(len(good), -1)
        return bad

    def put_binary(self, positions: np.ndarray, values: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Store cached vectors in binary (plan.vector_value): each length's values read as one array, copied
        into place at once. (a mask of those that do not fit, their input tokens, their latencies: NaN unknown)."""
        n = len(values)
        bad, tokens, latency = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), np.full(n, np.nan)
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        groups = np.unique(lengths)
        for length in groups.tolist():
            at = np.arange(n) if len(groups) == 1 else np.flatnonzero(lengths == length)
            group = values if len(groups) == 1 else [values[k] for k in at.tolist()]
            rows = vector_value.read(group)
            if rows is None:  # a damaged value among them (rare): the others still read
                ok = np.fromiter(map(vector_value.is_value, group), dtype=bool, count=len(group))
                bad[at[~ok]] = True
                at = at[ok]
                rows = vector_value.read(list(itertools.compress(group, ok.tolist()))) if ok.any() else None
            if rows is None or self._fits(rows["vector"].shape[1]) is not None:
                bad[at] = True  # not one of ours, or another model's length: asked again
                continue
            self.matrix[positions[at]] = rows["vector"]
            tokens[at], latency[at] = rows["tokens"], rows["latency"]
        return bad, tokens, latency

    def get(self, j: int) -> np.ndarray | None:
        return None if self.matrix is None else self.matrix[j]


def split_vectors(values: Sequence[str]) -> tuple[list[str], list] | None:
    """Cached vectors' values ('["<base64>",tokens,...]', as versions before the binary values wrote them) as their
    base64 texts and the rest of each row parsed (a 0 in the text's place); None unless every value is of that
    shape with texts of one length (the general parse reads and checks the rest)."""
    first = values[0]
    end = first.find('"', 2)
    if not first.startswith('["') or end < 0:
        return None
    width = end + 1  # '["' + the text + '"'
    if not all(v[end] == '"' and v[width] == "," and v[:2] == '["' for v in values if len(v) > width):
        return None
    if any(len(v) <= width for v in values):
        return None
    encoded = [v[2:end] for v in values]
    if any('"' in t or "\\" in t for t in encoded[:1]):  # base64 never holds these: not one of ours
        return None
    rows = loads("[" + ",".join(["[0" + v[width:] for v in values]) + "]")
    return encoded, rows


def _padding(texts: list, lengths: np.ndarray, common: int) -> int:
    """Bytes of base64 padding at the end of the texts of this length ("=" stands for a byte short of three)."""
    sample = texts[int(np.flatnonzero(lengths == common)[0])]
    return len(sample) - len(sample.rstrip("="))
