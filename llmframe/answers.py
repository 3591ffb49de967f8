"""Answers: the result of every distinct request of a run, held column-wise.

A million answers as a million Response objects cost over 200 bytes each before their text; as
columns they cost their text plus a few bytes. Code that works one answer at a time still can:
answers[j] builds a Response and answers[j] = response stores one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .request import Response

_NO_FINISH = 0  # finish code of "no finish reason given"


class Answers(Sequence):
    """Per distinct request: done, cached, text, tokens, finish reason, error, and the parsed value."""

    def __init__(self, size: int, *, structured: bool = False):
        self.done = np.zeros(size, dtype=bool)
        self.cached = np.zeros(size, dtype=bool)
        self.input_tokens = np.zeros(size, dtype=np.int64)
        self.output_tokens = np.zeros(size, dtype=np.int64)
        self.finish = np.zeros(size, dtype=np.int16)  # code into finish_names
        self.finish_names: list[str | None] = [None]
        self._finish_codes: dict[str | None, int] = {None: _NO_FINISH}
        self.texts: list[str | None] = [None] * size
        self.errors: dict[int, str] = {}  # failures are few: kept sparse
        self.parsed: list[Any] | None = [None] * size if structured else None

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

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        if not self.done[j]:
            return None
        return Response(
            self.texts[j],
            int(self.input_tokens[j]),
            int(self.output_tokens[j]),
            self.finish_names[self.finish[j]],
            self.errors.get(j),
            bool(self.cached[j]),
            None,
            self.parsed[j] if self.parsed is not None else None,
        )

    def __setitem__(self, j: int, response: Response) -> None:
        self.done[j] = True
        self.cached[j] = response.cached
        self.texts[j] = response.text
        self.input_tokens[j] = response.input_tokens
        self.output_tokens[j] = response.output_tokens
        self.finish[j] = self._finish_code(response.finish_reason)
        if response.error is not None:
            self.errors[j] = response.error
        else:
            self.errors.pop(j, None)
        if response.parsed is not None:
            if self.parsed is None:
                self.parsed = [None] * len(self)
            self.parsed[j] = response.parsed

    def __iter__(self) -> Iterator[Response | None]:
        return (self[j] for j in range(len(self)))

    def _finish_code(self, reason: str | None) -> int:
        code = self._finish_codes.get(reason)
        if code is None:
            code = self._finish_codes[reason] = len(self.finish_names)
            self.finish_names.append(reason)
        return code

    def fill_from_cache(self, positions: Sequence[int], values: Sequence[str],
                        check: Callable[[str | None], tuple[Any, str | None]] | None = None) -> list[int]:
        """Store answers read from the cache (Response.to_cache texts); one JSON parse for all of them.

        With check, an answer that no longer validates is left undone; returns those positions.
        """
        if not values:
            return []
        rows = json.loads("[" + ",".join(values) + "]")
        positions = np.asarray(positions, dtype=np.int64)
        stale: list[int] = []
        if check is not None:
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
        texts, inputs, outputs, finishes = list(zip(*rows))[:4]  # transposed in C: one pass, no per-row frames
        for j, text in zip(positions.tolist(), texts):
            self.texts[j] = text
        self.input_tokens[positions] = inputs
        self.output_tokens[positions] = outputs
        code = self._finish_code
        self.finish[positions] = [code(reason) for reason in finishes] if len(set(finishes)) > 1 else code(finishes[0])
        self.cached[positions] = True
        self.done[positions] = True
        return stale

    def failed(self) -> np.ndarray:
        """A mask of the requests that failed (or never ran)."""
        mask = ~self.done
        if self.errors:
            mask[np.fromiter(self.errors, dtype=np.int64, count=len(self.errors))] = True
        return mask

    def error_texts(self) -> list[str | None]:
        """Per request: its error, or a note on an incomplete answer, or None."""
        notes = [_incomplete(reason) for reason in self.finish_names]
        out = [notes[code] for code in self.finish.tolist()]
        for j, text in enumerate(self.texts):
            if not text and out[j] is None and self.done[j]:
                out[j] = "empty answer"
        for j in np.flatnonzero(~self.done).tolist():
            out[j] = "not answered (the run stopped first)"
        for j, error in self.errors.items():
            out[j] = error
        return out

    def finish_counts(self, weights: np.ndarray) -> dict[str, int]:
        """Rows per finish reason, over the answers that succeeded."""
        ok = self.done & ~self.failed()
        counts = np.bincount(self.finish[ok], weights=weights[ok], minlength=len(self.finish_names))
        return {str(name): int(n) for name, n in zip(self.finish_names, counts.tolist()) if n}


_COMPLETE = frozenset({"stop", "end_turn", "stop_sequence", None})
_WHY = {"length": " (max_tokens reached)", "max_tokens": " (max_tokens reached)", "content_filter": " (filtered)"}


def _incomplete(reason: str | None) -> str | None:
    """A note for an answer that is there but not whole: truncated or filtered (never silent)."""
    if reason in _COMPLETE:
        return None
    return f"incomplete answer: finish_reason={reason!r}" + _WHY.get(reason, "")


def incomplete(response: Response) -> str | None:
    """A note for an answer that is there but not whole: truncated, filtered or empty (never silent)."""
    note = _incomplete(response.finish_reason)
    if note is None and not response.text:
        return "empty answer"
    return note
