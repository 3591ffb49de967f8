"""Some of a frame's rows, as rows of their own: what a cascade's later stages plan from (ops/cascade.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from .rows import Rows


class Subset:
    """The rows of `rows` at `positions` (in that order), read through the same Rows interface."""

    def __init__(self, rows: Rows, positions: np.ndarray):
        self.rows = rows
        self.positions = np.asarray(positions, dtype=np.int64)
        self.columns = rows.columns
        self.index_names = rows.index_names
        self.nulls = rows.nulls

    def __len__(self) -> int:
        return len(self.positions)

    def values(self, column: Any, positions: np.ndarray | None = None) -> list:
        at = self.positions if positions is None else self.positions[np.asarray(positions, dtype=np.int64)]
        return self.rows.values(column, at)

    def missing(self, column: Any) -> np.ndarray:
        return self.rows.missing(column)[self.positions]

    def holds_objects(self, column: Any) -> bool:
        return self.rows.holds_objects(column)

    def records(self) -> Iterator[tuple]:
        wanted = {int(p): k for k, p in enumerate(self.positions)}
        found: dict[int, tuple] = {}
        for i, record in enumerate(itertools.islice(self.rows.records(), int(self.positions.max(initial=-1)) + 1)):
            if i in wanted:
                found[wanted[i]] = record
        return (found[k] for k in range(len(self.positions)))

    def label(self, position: int) -> Any:
        return self.rows.label(int(self.positions[position]))

    def unusable(self, column: Any) -> str | None:
        return self.rows.unusable(column)
