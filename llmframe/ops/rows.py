"""Rows an operator makes for its calls (a join's pairs, a ranking's comparisons, an aggregate's prompts), as
plan.rows.Rows: columns picked from a face's rows at given positions, or plain texts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..plan.rows import Rows


class PickedRows:
    """Columns of other rows at positions, under new names: values as the face gives them, so prompts (and keys)
    are the ones generate renders from the same values."""

    index_names = ()

    def __init__(self, picks: dict[str, tuple[Rows, Any, np.ndarray]]):
        self._picks = {name: (rows, column, np.asarray(at, dtype=np.int64)) for name, (rows, column, at) in picks.items()}
        self.columns = list(self._picks)
        self.nulls = tuple(dict.fromkeys(n for rows, _, _ in self._picks.values() for n in rows.nulls))
        self._length = len(next(iter(self._picks.values()))[2]) if self._picks else 0

    def __len__(self) -> int:
        return self._length

    def values(self, column: str, positions: np.ndarray | None = None) -> list:
        rows, source, at = self._picks[column]
        return rows.values(source, at if positions is None else at[np.asarray(positions, dtype=np.int64)])

    def missing(self, column: str) -> np.ndarray:
        rows, source, at = self._picks[column]
        return rows.missing(source)[at]

    def holds_objects(self, column: str) -> bool:
        rows, source, _ = self._picks[column]
        return rows.holds_objects(source)

    def records(self) -> Iterator[tuple]:
        return zip(*(self.values(c) for c in self.columns))

    def label(self, position: int) -> int:
        return position

    def unusable(self, column: str) -> str | None:
        rows, source, _ = self._picks[column]
        return rows.unusable(source)


class TextRows:
    """Plain texts as rows (None is missing): the prompts an operator writes itself."""

    index_names = ()
    nulls = ()

    def __init__(self, columns: dict[str, list]):
        self._columns = columns
        self.columns = list(columns)

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()))) if self._columns else 0

    def values(self, column: str, positions: np.ndarray | None = None) -> list:
        values = self._columns[column]
        return list(values) if positions is None else [values[i] for i in positions]

    def missing(self, column: str) -> np.ndarray:
        return np.fromiter((v is None for v in self._columns[column]), dtype=bool, count=len(self))

    def holds_objects(self, column: str) -> bool:
        return False

    def records(self) -> Iterator[tuple]:
        return zip(*self._columns.values())

    def label(self, position: int) -> int:
        return position

    def unusable(self, column: str) -> str | None:
        return None
