"""Answers: the result of every distinct request of a run, held column-wise.

A million answers as a million Response objects cost over 200 bytes each before their text; as
columns they cost their text plus a few bytes. Texts are sealed into Arrow a block at a time as
soon as a block is complete (a Python str costs 49 bytes more than its text, and the output column
is Arrow anyway). Code that works one answer at a time still can: answers[j] builds a Response and
answers[j] = response stores one.
"""

from __future__ import annotations

import copy
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import constants
from ..plan.request import Response, loads
from .vectors import Vectors, split_vectors

_NO_FINISH = 0  # finish code of "no finish reason given"
_first = operator.itemgetter(0)


class Answers(Sequence):
    """Per distinct request: done, cached, text, tokens, finish reason, error, and the parsed value."""

    def __init__(self, size: int, *, structured: bool = False, block: int = constants.CHUNK_SIZE,
                 vectors: bool = False):
        self.vectors = Vectors(size) if vectors else None  # an embedding run's answers: no text is kept
        self.done = np.zeros(size, dtype=bool)
        self.cached = np.zeros(size, dtype=bool)
        # int32: one request's tokens fit, and a million rows save 12 MB (sums are taken in int64).
        self.input_tokens = np.zeros(size, dtype=np.int32)
        self.output_tokens = np.zeros(size, dtype=np.int32)
        self.cached_input_tokens = np.zeros(size, dtype=np.int32)  # served from the provider's prompt cache
        self.reasoning_tokens = np.zeros(size, dtype=np.int32)  # of output_tokens, a reasoning model's thinking
        self.cache_write_tokens = np.zeros(size, dtype=np.int32)  # of input_tokens, written to the prompt cache
        self.latency = np.full(size, np.nan)  # seconds of the answering request; NaN where unknown
        self.confidence = np.full(size, np.nan, dtype=np.float32)  # from log-probabilities; NaN where none
        self.finish = np.zeros(size, dtype=np.int16)  # code into finish_names
        self.finish_names: list[str | None] = [None]
        self._finish_codes: dict[str | None, int] = {None: _NO_FINISH}
        self._block = block
        self._open: dict[int, list[str | None]] = {}  # block -> its texts so far, until the block is sealed
        self._sealed: dict[int, pa.Array] = {}  # block -> its texts, once every answer in it is in
        self._remaining = np.bincount(np.arange(size) // block, minlength=-(-size // block)).astype(np.int64)
        self._late: dict[int, str | None] = {}  # an answer replaced after its block was sealed (rare)
        self.errors: dict[int, str] = {}  # failures are few: kept sparse
        self.parsed: list[Any] | None = [None] * size if structured else None
        self.transcripts: dict[int, str] = {}  # tools=: request -> its tool calls and results (JSON)

    @classmethod
    def of(cls, responses: Sequence[Response | None]) -> Answers:
        """Answers from Response objects (None where a request has no answer yet)."""
        if isinstance(responses, Answers):
            return responses
        out = cls(len(responses), structured=any(r is not None and r.parsed is not None for r in responses))
        for j, response in enumerate(responses):
            if response is not None:
                out[j] = response
        return out

    def __len__(self) -> int:
        return len(self.done)

    def snapshot(self) -> Answers:
        """A copy that later answers leave as it is (a running job's partial result); sealed blocks are shared."""
        out = copy.copy(self)
        for name in ("done", "cached", "input_tokens", "output_tokens", "cached_input_tokens", "latency", "finish",
                     "_remaining", "confidence", "reasoning_tokens", "cache_write_tokens"):
            setattr(out, name, getattr(self, name).copy())
        out.finish_names, out._finish_codes = list(self.finish_names), dict(self._finish_codes)
        out._open = {b: list(texts) for b, texts in self._open.items()}
        out._sealed, out._late, out.errors = dict(self._sealed), dict(self._late), dict(self.errors)
        out.transcripts = dict(self.transcripts)
        out.parsed = None if self.parsed is None else list(self.parsed)
        return out

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        if not self.done[j]:
            return None
        return Response(
            self.text(j),
            int(self.input_tokens[j]),
            int(self.output_tokens[j]),
            self.finish_names[self.finish[j]],
            self.errors.get(j),
            bool(self.cached[j]),
            None,
            self.parsed[j] if self.parsed is not None else None,
            int(self.cached_input_tokens[j]),
            None if np.isnan(self.latency[j]) else float(self.latency[j]),
            vector=self.vectors.get(j) if self.vectors is not None else None,
            confidence=None if np.isnan(self.confidence[j]) else float(self.confidence[j]),
            reasoning_tokens=int(self.reasoning_tokens[j]),
            cache_write_tokens=int(self.cache_write_tokens[j]),
        )

    def __setitem__(self, j: int, response: Response) -> None:
        if self.vectors is not None:
            problem = self.vectors.put(j, response.vector) if response.error is None else None
            if problem is not None:
                response = response.rejected(problem)
            self._set_text(j, None)
        else:
            self._set_text(j, response.text)
        self.cached[j] = response.cached
        self.input_tokens[j] = response.input_tokens
        self.output_tokens[j] = response.output_tokens
        self.cached_input_tokens[j] = response.cached_input_tokens
        self.reasoning_tokens[j] = response.reasoning_tokens
        self.cache_write_tokens[j] = response.cache_write_tokens
        self.latency[j] = np.nan if response.latency is None else response.latency
        self.confidence[j] = np.nan if response.confidence is None else response.confidence
        self.finish[j] = self._finish_code(response.finish_reason)
        if response.error is not None:
            self.errors[j] = response.error
        else:
            self.errors.pop(j, None)
        if response.transcript is not None:
            self.transcripts[j] = response.transcript
        if response.parsed is not None:
            if self.parsed is None:
                self.parsed = [None] * len(self)
            self.parsed[j] = response.parsed

    def put_vectors(self, positions: list[int], vectors: np.ndarray, tokens: np.ndarray,
                    latency: float | None) -> str | None:
        """Store an answered embedding pack: its rows' vectors, tokens and latency, decoded into place.

        Returns the problem (a vector of another length than the run's others), storing nothing, if there is one.
        """
        at = np.asarray(positions, dtype=np.int64)
        if self.done[at].any() or any(j in self.errors for j in positions):  # answered before (rare): one at a time
            for k, j in enumerate(positions):
                self[j] = Response(None, int(tokens[k]), 0, None, latency=latency, vector=vectors[k])
            return None
        assert self.vectors is not None
        problem = self.vectors.put_many(at, vectors)
        if problem is not None:
            return problem
        self.cached[at] = False
        self.input_tokens[at] = tokens
        self.output_tokens[at] = 0
        self.cached_input_tokens[at] = 0
        self.cache_write_tokens[at] = 0
        self.latency[at] = np.nan if latency is None else latency
        self.finish[at] = _NO_FINISH
        self._set_texts(at, [None] * len(positions))
        return None

    def __iter__(self) -> Iterator[Response | None]:
        return (self[j] for j in range(len(self)))

    def text(self, j: int) -> str | None:
        """The answer text of request j."""
        if j in self._late:
            return self._late[j]
        b, k = divmod(j, self._block)
        sealed = self._sealed.get(b)
        if sealed is not None:
            return sealed[k].as_py()
        texts = self._open.get(b)
        return None if texts is None else texts[k]

    def text_array(self) -> pa.ChunkedArray:
        """Every answer's text (null where there is none), as Arrow: the sealed blocks, not copied."""
        chunks = []
        for b in range(len(self._remaining)):
            start = b * self._block
            chunk = self._sealed.get(b)
            if chunk is None:
                chunk = pa.array(self._texts_of(b), pa.large_string())
            late = [j for j in self._late if start <= j < start + self._block]
            if late:
                values = chunk.to_pylist()
                for j in late:
                    values[j - start] = self._late[j]
                chunk = pa.array(values, pa.large_string())
            chunks.append(chunk)
        return pa.chunked_array(chunks, pa.large_string())

    def _set_text(self, j: int, text: str | None) -> None:
        b = j // self._block
        if b in self._sealed:
            self._late[j] = text
            return
        self._texts_of(b)[j - b * self._block] = text
        if not self.done[j]:
            self.done[j] = True
            self._remaining[b] -= 1
            if not self._remaining[b]:
                self._seal(b)

    def _set_texts(self, positions: np.ndarray, texts: Sequence[str | None]) -> None:
        """_set_text for many answers at once: the cached path's per-row cost is one list store."""
        blocks, counts = np.unique(positions // self._block, return_counts=True)
        if any(b in self._sealed for b in blocks.tolist()) or self.done[positions].any():
            for j, text in zip(positions.tolist(), texts):
                self._set_text(j, text)
            return
        size = self._block
        self.done[positions] = True
        self._remaining[blocks] -= counts
        if len(blocks) == 1 and not self._remaining[blocks[0]] and int(blocks[0]) not in self._open \
                and (np.diff(positions) == 1).all():  # a whole block at once, in order (a cached re-run)
            self._sealed[int(blocks[0])] = pa.array(texts, pa.large_string())
            return
        block_of = positions // size
        for b in blocks.tolist():
            store, inside = self._texts_of(b), block_of == b
            for k, text in zip((positions[inside] - b * size).tolist(), itertools.compress(texts, inside)):
                store[k] = text
        for b in blocks[self._remaining[blocks] == 0].tolist():
            self._seal(b)

    def _texts_of(self, b: int) -> list[str | None]:
        """The texts of block b, not sealed yet (made on its first answer: untouched blocks cost nothing)."""
        texts = self._open.get(b)
        if texts is None:
            texts = self._open[b] = [None] * (min((b + 1) * self._block, len(self)) - b * self._block)
        return texts

    def _seal(self, b: int) -> None:
        self._sealed[b] = pa.array(self._texts_of(b), pa.large_string())
        del self._open[b]

    def _finish_code(self, reason: str | None) -> int:
        code = self._finish_codes.get(reason)
        if code is None:
            code = self._finish_codes[reason] = len(self.finish_names)
            self.finish_names.append(reason)
        return code

    def fill_from_cache(self, positions: Sequence[int], values: Sequence[str],
                        check: Callable[[str | None], tuple[Any, str | None]] | None = None) -> list[int]:
        """Store answers read from the cache (Response.to_cache texts); one JSON parse for all of them.

        With check, an answer that no longer validates is left undone; returns those positions. So is an
        empty answer that claims to be whole, which caches written before it was a failure may hold.
        """
        if not values:
            return []
        if self.vectors is not None and bytes in set(map(type, values)):  # binary vectors (plan.vector_value)
            return self._fill_binary(positions, values)
        split = split_vectors(values) if self.vectors is not None else None
        if split is not None:  # the vectors' texts cut out: JSON parses only the short rest of each value
            encoded, rows = split
        else:
            rows = loads("[" + ",".join(values) + "]")
        positions = np.asarray(positions, dtype=np.int64)
        stale: list[int] = []
        if self.vectors is not None:  # the cached texts are vectors: decoded into place, no text kept
            bad = self.vectors.put_encoded(positions, encoded if split is not None else list(map(_first, rows)))
            if bad.any():
                stale = positions[bad].tolist()
                positions, rows = positions[~bad], list(itertools.compress(rows, (~bad).tolist()))
        elif check is None and "" in map(_first, rows):  # a scan in C: the cached path stays as fast
            empty = np.array([not row[0] and _incomplete(row[3]) is None for row in rows], dtype=bool)
            stale = positions[empty].tolist()
            positions, rows = positions[~empty], list(itertools.compress(rows, (~empty).tolist()))
        elif check is not None:
            if self.parsed is None:
                self.parsed = [None] * len(self)
            keep = []
            for k, (j, row) in enumerate(zip(positions.tolist(), rows)):
                value, problem = check(row[0])
                if problem is None:
                    self.parsed[j] = value
                    keep.append(k)
                else:
                    stale.append(j)  # the validators changed since: ask again, replace the answer
            if stale:
                positions, rows = positions[keep], [rows[k] for k in keep]
        if not rows:
            return stale
        # Transposed in C, no per-row Python code; values written before a field existed give None there.
        columns = list(itertools.zip_longest(*rows))
        texts, inputs, outputs, finishes = columns[:4]
        if self.vectors is not None:
            texts = [None] * len(positions)  # the vectors are in the matrix: no text is kept
        self.input_tokens[positions] = inputs
        self.output_tokens[positions] = outputs
        if len(columns) > 7:  # latency and cached input tokens
            self.latency[positions] = np.array(columns[6], dtype=float)  # None (unknown) becomes NaN
            self.cached_input_tokens[positions] = np.nan_to_num(np.array(columns[7], dtype=float)).astype(np.int64)
        if len(columns) > 9:  # a tools run's transcripts
            self.transcripts.update((j, t) for j, t in zip(positions.tolist(), columns[9]) if t is not None)
        if len(columns) > 10:  # reasoning tokens, after the transcript (written only where there were some)
            self.reasoning_tokens[positions] = np.nan_to_num(np.array(columns[10], dtype=float)).astype(np.int64)
        if len(columns) > 11:  # a confidence from log-probabilities (None in the rows written without one)
            self.confidence[positions] = np.array(columns[11], dtype=float)
        if len(columns) > 12:  # prompt-cache write tokens (written only where there were some)
            self.cache_write_tokens[positions] = np.nan_to_num(np.array(columns[12], dtype=float)).astype(np.int64)
        code = self._finish_code
        self.finish[positions] = [code(reason) for reason in finishes] if len(set(finishes)) > 1 else code(finishes[0])
        self.cached[positions] = True
        self._set_texts(positions, texts)
        return stale

    def _fill_binary(self, positions: Sequence[int], values: Sequence[Any]) -> list[int]:
        """fill_from_cache of an embedding run's values, binary ones decoded into the matrix at once (texts that
        older versions wrote take the general path)."""
        binary = np.fromiter((type(v) is bytes for v in values), dtype=bool, count=len(values))
        positions = np.asarray(positions, dtype=np.int64)
        stale = [] if binary.all() else self.fill_from_cache(positions[~binary].tolist(),
                                                             list(itertools.compress(values, (~binary).tolist())))
        at = positions[binary]
        assert self.vectors is not None
        bad, tokens, latency = self.vectors.put_binary(at, list(itertools.compress(values, binary.tolist())))
        stale += at[bad].tolist()
        at, tokens, latency = at[~bad], tokens[~bad], latency[~bad]
        self.input_tokens[at], self.latency[at] = tokens, latency
        for name in ("output_tokens", "cached_input_tokens", "reasoning_tokens", "cache_write_tokens", "finish"):
            getattr(self, name)[at] = 0
        self.cached[at] = True
        self._set_texts(at, [None] * len(at))
        return stale

    def failed(self) -> np.ndarray:
        """A mask of the requests that failed (or never ran)."""
        mask = ~self.done
        if self.errors:
            mask[np.fromiter(self.errors, dtype=np.int64, count=len(self.errors))] = True
        return mask

    def error_notes(self, texts: pa.ChunkedArray | None = None, unanswered: str | None = None) -> dict[int, str]:
        """Request -> its error, or a note on an incomplete or empty answer; only where there is one.

        texts: text_array(), when the caller has built it already; unanswered: the note of requests without
        an answer (default: the run stopped first).
        """
        notes = [_incomplete(reason) for reason in self.finish_names]
        noted = np.array([note is not None for note in notes])
        out = {j: notes[self.finish[j]] for j in np.flatnonzero(noted[self.finish] & self.done).tolist()}
        if self.vectors is None:  # an embedding's answer is its vector: no text, and never empty
            texts = self.text_array() if texts is None else texts
            empty = pc.fill_null(pc.equal(pc.utf8_length(texts), 0), True).to_numpy(zero_copy_only=False)
            for j in np.flatnonzero(empty & self.done).tolist():
                out.setdefault(j, EMPTY_ANSWER)
        out.update(dict.fromkeys(np.flatnonzero(~self.done).tolist(), unanswered or constants.NOT_ANSWERED))
        out.update(self.errors)
        return out

    def finish_counts(self, weights: np.ndarray) -> dict[str, int]:
        """Rows per finish reason, over the answers that succeeded."""
        ok = self.done & ~self.failed()
        counts = np.bincount(self.finish[ok], weights=weights[ok], minlength=len(self.finish_names))
        return {constants.NO_FINISH_REASON if name is None else str(name): int(n)
                for name, n in zip(self.finish_names, counts.tolist()) if n}


_COMPLETE = frozenset({"stop", "end_turn", "stop_sequence", None})
_WHY = {"length": " (max_tokens reached)", "max_tokens": " (max_tokens reached)", "content_filter": " (filtered)"}


def _incomplete(reason: str | None) -> str | None:
    """A note for an answer that is there but not whole: truncated or filtered (never silent)."""
    if reason in _COMPLETE:
        return None
    return f"incomplete answer: finish_reason={reason!r}" + _WHY.get(reason, "")


EMPTY_ANSWER = "empty answer"


def is_empty(response: Response) -> bool:
    """An answer with no text that claims to be whole: a failure, never cached (a cut-off one is kept, noted).

    An embedding's answer is its vector, never empty.
    """
    return (response.error is None and response.vector is None and not response.text
            and _incomplete(response.finish_reason) is None)


def incomplete(response: Response) -> str | None:
    """A note for an answer that is there but not whole: truncated, filtered or empty (never silent)."""
    note = _incomplete(response.finish_reason)
    if note is None and not response.text:
        return EMPTY_ANSWER
    return note
