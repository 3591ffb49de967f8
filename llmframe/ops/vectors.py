"""Nearest vectors by cosine similarity, in numpy: search, similarity join and near-duplicate groups.

Every operation scores a block of rows at a time (constants.VECTOR_BLOCK_ROWS, fewer when the other side
is long), so memory stays bounded by a block of scores whatever the sizes. Rows without a vector (NaN,
from failed embeddings) never match. Exact search; an index library did not pay for itself at these sizes
(see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import collections
import hashlib
import numbers

import numpy as np

from .. import constants
from ..errors import ConfigError

_SCORES_PER_BLOCK = 2**25  # scores (float32) held at once by sim_join and dedup: 128 MB
_SEARCH_BLOCKS = 16  # inverse_norms reads VECTOR_BLOCK_ROWS times this many rows at a time


def check_k(k) -> int:
    """k as an int >= 1; ConfigError otherwise."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def check_threshold(threshold, optional: bool) -> float | None:
    """threshold as a float in [-1, 1] (or None, when optional); ConfigError otherwise."""
    if threshold is None and optional:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not -1 <= threshold <= 1:
        raise ConfigError(f"threshold must be a cosine similarity between -1 and 1, got {threshold!r}")
    return float(threshold)


def _inverse_norms(block: np.ndarray) -> np.ndarray:
    """1 / the length of each row; 0 for zero rows, NaN rows stay NaN (and are masked by the caller)."""
    norms = np.sqrt(np.einsum("ij,ij->i", block, block))
    with np.errstate(divide="ignore"):
        return np.where(norms > 0, 1.0 / norms, 0.0).astype(np.float32)


def normalised(matrix: np.ndarray) -> np.ndarray:
    """A copy of the rows at unit length (zero rows stay zero; NaN rows become -inf-scoring zero rows)."""
    out = np.empty_like(matrix, dtype=np.float32)
    for start in range(0, len(matrix), constants.VECTOR_BLOCK_ROWS):
        block = matrix[start : start + constants.VECTOR_BLOCK_ROWS]
        bad = np.isnan(block).any(axis=1)
        out[start : start + len(block)] = block * _inverse_norms(block)[:, None]
        out[start : start + len(block)][bad] = 0.0
    return out


def _valid(matrix: np.ndarray, start: int, stop: int) -> np.ndarray:
    return ~np.isnan(matrix[start:stop]).any(axis=1)


def _top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of scores, the positions and scores of its k best, best first (k <= columns)."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    best = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(best, order, axis=1)


def inverse_norms(matrix: np.ndarray) -> np.ndarray:
    """1 / each row's length (0 for zero rows, NaN for rows without a vector), for search(inverse=...)."""
    out = np.empty(len(matrix), dtype=np.float32)
    for start in range(0, len(matrix), constants.VECTOR_BLOCK_ROWS * _SEARCH_BLOCKS):
        block = matrix[start : start + constants.VECTOR_BLOCK_ROWS * _SEARCH_BLOCKS]
        out[start : start + len(block)] = _inverse_norms(block)
    return out


# Row lengths of the vector columns searched lately: a query then reads the vectors once, not twice. Keyed by
# where the column's numbers live and checked against a sample of them, so it serves pandas and Polars (whose
# Arrow objects are made anew on each access) alike, and a freed column's memory reused by another never matches.
_NORMS: collections.OrderedDict[tuple, tuple[bytes, np.ndarray]] = collections.OrderedDict()
_NORMS_KEPT = 8  # columns; a million rows' norms are 4 MB
_SAMPLE_ROWS = 64


def remembered_norms(matrix: np.ndarray) -> np.ndarray:
    """inverse_norms of a vector column's matrix, remembered while the same numbers are searched again."""
    if not matrix.size:
        return inverse_norms(matrix)
    key = (matrix.__array_interface__["data"][0], matrix.shape, matrix.strides)
    picks = np.linspace(0, len(matrix) - 1, num=min(_SAMPLE_ROWS, len(matrix)), dtype=np.int64)
    sample = hashlib.blake2b(np.ascontiguousarray(matrix[picks]).tobytes(), digest_size=16).digest()
    found = _NORMS.get(key)
    if found is not None and found[0] == sample:
        _NORMS.move_to_end(key)
        return found[1]
    norms = inverse_norms(matrix)
    _NORMS[key] = (sample, norms)
    while len(_NORMS) > _NORMS_KEPT:
        _NORMS.popitem(last=False)
    return norms


def search(matrix: np.ndarray, query: np.ndarray, *, k: int, inverse: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the k rows most like query, best first (equal scores in row order), and their scores.

    inverse: inverse_norms(matrix), where the caller keeps it between queries (one pass over the matrix less).
    """
    (rows,), (scores,) = search_many(matrix, np.asarray(query, dtype=np.float32).reshape(1, -1), k=k,
                                     inverse=inverse)
    return rows, scores


def search_many(matrix: np.ndarray, queries: np.ndarray, *, k: int, inverse: np.ndarray | None = None
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """search() for each row of queries at once: one read of the matrix serves them all.

    One product per block of rows; per query, only the rows that beat its k-th best so far are ranked, so the
    cost is the product's, not a partition of a million scores per query.
    """
    queries = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
    norms = np.sqrt(np.einsum("ij,ij->i", queries, queries))
    unit = np.ascontiguousarray((queries / np.where(norms > 0, norms, 1)[:, None]).T)  # (dimensions, queries)
    k = min(k, len(matrix))
    rows = [np.zeros(0, np.int64) for _ in range(len(queries))]
    scores = [np.zeros(0, np.float32) for _ in range(len(queries))]
    floors = np.full(len(queries), -np.inf)  # each query's k-th best score so far, once it has k
    # A block's scores are one number a row per query: blocks can be long, and one product over many rows is
    # faster than many over few (BLAS starts its threads once); memory stays at _SCORES_PER_BLOCK scores.
    step = max(constants.VECTOR_BLOCK_ROWS, _SCORES_PER_BLOCK // max(1, len(queries)))
    single = len(queries) == 1
    for start in range(0, len(matrix), step):
        block = matrix[start : start + step]
        s = (block @ unit[:, 0])[:, None] if single else block @ unit
        s *= (_inverse_norms(block) if inverse is None else inverse[start : start + len(block)])[:, None]
        s[np.isnan(s)] = -np.inf  # a row without a vector never matches
        for q in range(len(queries)):
            column, head = s[:, q], 0
            if len(scores[q]) < k:  # the best of the block's head set the floor: the rest is one comparison
                head = min(len(column), max(4 * k, constants.VECTOR_BLOCK_ROWS))
                rows[q], scores[q] = _best(rows[q], scores[q], np.arange(head), column[:head], start, k)
            if len(scores[q]) >= k:
                floors[q] = float(scores[q].min())
                found = head + np.flatnonzero(column[head:] > floors[q])
            else:
                found = np.arange(head, len(column))
            if len(found):
                rows[q], scores[q] = _best(rows[q], scores[q], found, column[found], start, k)
    for q in range(len(queries)):
        order = np.lexsort((rows[q], -scores[q]))
        keep = np.isfinite(scores[q][order])
        rows[q], scores[q] = rows[q][order][keep], scores[q][order][keep]
    return rows, scores


def _best(rows: np.ndarray, scores: np.ndarray, found: np.ndarray, values: np.ndarray, start: int, k: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """The k best of (rows, scores) and the block's found rows (offset by start) with their values."""
    rows, scores = np.concatenate([rows, found + start]), np.concatenate([scores, values])
    if len(scores) > k:
        keep = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[keep], scores[keep]
    return rows, scores


def sim_join(left: np.ndarray, right: np.ndarray, *, k: int, threshold: float | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each left row, its k most alike right rows (at least threshold): (left rows, right rows, scores)."""
    if not len(left) or not len(right):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    b = normalised(right).T.copy()  # (dimensions, right rows): one contiguous operand for every block
    valid_right = _valid(right, 0, len(right))
    all_right = bool(valid_right.all())
    k = min(k, len(right))
    step = max(1, min(constants.VECTOR_BLOCK_ROWS, _SCORES_PER_BLOCK // len(right)))
    out_l, out_r, out_s = [], [], []
    for start in range(0, len(left), step):
        block = left[start : start + step]
        scores = (block * _inverse_norms(block)[:, None]) @ b
        if not all_right:
            scores[:, ~valid_right] = -np.inf
        valid_left = _valid(left, start, start + len(block))
        if not valid_left.all():
            scores[~valid_left] = -np.inf
        rows, best = _top(scores, k)
        keep = np.isfinite(best) if threshold is None else best >= threshold
        out_l.append(np.broadcast_to(np.arange(start, start + len(block))[:, None], rows.shape)[keep])
        out_r.append(rows[keep])
        out_s.append(best[keep])
    return np.concatenate(out_l), np.concatenate(out_r), np.concatenate(out_s).astype(np.float32)


def dedup(matrix: np.ndarray, *, threshold: float) -> np.ndarray:
    """A group id per row: rows at least threshold alike, directly or through others, share one.

    Ids are 0, 1, ... in the order of each group's first row. Rows without a vector are groups of their own.
    """
    n = len(matrix)
    unit = normalised(matrix)
    valid = _valid(matrix, 0, n)
    parent = np.arange(n)
    step = max(1, min(constants.VECTOR_BLOCK_ROWS, _SCORES_PER_BLOCK // max(n, 1)))
    for start in range(0, n, step):
        block = unit[start : start + step]
        scores = block @ unit[start:].T  # the upper triangle only: pairs (i, j) with j >= i
        i, j = np.nonzero(scores >= threshold)
        i, j = i + start, j + start
        keep = (j > i) & valid[i] & valid[j]
        for a, b in zip(i[keep].tolist(), j[keep].tolist()):
            _union(parent, a, b)
    roots = parent
    while not np.array_equal(roots, nxt := roots[roots]):  # pointer jumping: every row to its group's root
        roots = nxt
    _, first, codes = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[codes.ravel()]


def _find(parent: np.ndarray, x: int) -> int:
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression: later finds are short
        parent[x], x = root, parent[x]
    return root


def _union(parent: np.ndarray, a: int, b: int) -> None:
    ra, rb = _find(parent, a), _find(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)  # the earlier row is the root: its group's first row
