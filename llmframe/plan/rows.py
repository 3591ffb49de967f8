"""The rows a plan renders from: what the core reads of a frame, whichever library holds it (faces implement it)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np


class Rows(Protocol):
    """A frame as the plan sees it: column labels, a row count, and values read a column at a time.

    A face wraps its frame in one (faces/frames.py for pandas); nothing in the core knows the library.
    """

    columns: list  # the column labels, in order
    index_names: tuple  # names a written file keeps the row labels under (pandas' index levels); () if none
    nulls: tuple  # the library's own missing-value objects, which a container's JSON spells null

    def __len__(self) -> int: ...

    def values(self, column: Any, positions: np.ndarray | None = None) -> list:
        """The column's values at these positions (all rows for None), as Python objects for str.format."""

    def missing(self, column: Any) -> np.ndarray:
        """A boolean mask of the rows whose value in this column is missing."""

    def holds_objects(self, column: Any) -> bool:
        """Whether the column may hold arbitrary Python objects (containers, bytes), not only plain scalars."""

    def records(self) -> Iterator[tuple]:
        """Every row's values in column order, for template functions."""

    def label(self, position: int) -> Any:
        """The row's label, for error messages (its index label in pandas)."""

    def unusable(self, column: Any) -> str | None:
        """Why the column's values cannot go into a prompt (bytes), in the library's words and with its fix; or None."""


_CONTAINERS = (list, tuple, dict, set, frozenset, np.ndarray)
_strict_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def containers_as_json(rows: Rows, column: Any, values: list) -> list:
    """Lists, dicts and arrays in a bare {column} render as JSON, which models read better than reprs."""
    if not rows.holds_objects(column) or not any(isinstance(v, _CONTAINERS) for v in values):
        return values
    return [_as_json(v, rows.nulls) if isinstance(v, _CONTAINERS) else v for v in values]


def _as_json(value: Any, nulls: tuple) -> str:
    """Valid JSON: the plain case in C; sets, NaN, numpy scalars and other objects inside take the slow path."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    try:
        return _strict_json(value)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(value, nulls), ensure_ascii=False, default=str, allow_nan=False)


def _jsonable(value: Any, nulls: tuple) -> Any:
    """value made valid JSON: NaN, inf and nulls become null, a set a sorted list, numpy scalars Python numbers."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):  # keys JSON cannot hold (tuples...) as text, as for values
        return {k if k is None or isinstance(k, (str, int, float)) else str(k): _jsonable(v, nulls)
                for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [_jsonable(v, nulls) for v in value]
        try:
            return sorted(items)
        except TypeError:  # mixed types: a stable order all the same, so equal sets give equal prompts
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, nulls) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return None if any(value is null for null in nulls) else value


def first_bytes(rows: Rows, column: Any) -> int | None:
    """The position of the first row whose value in the column is bytes, or None."""
    if not rows.holds_objects(column):
        return None
    return next((i for i, v in enumerate(rows.values(column)) if isinstance(v, (bytes, bytearray))), None)


def missing_reasons(rows: Rows, columns: Sequence) -> dict[int, str]:
    """Row position -> why it is skipped, for rows with a missing value in a used column."""
    reasons: dict[int, str] = {}
    for column in columns:
        for i in np.flatnonzero(rows.missing(column)):
            reasons.setdefault(int(i), f"missing value in column {column!r}")
    return dict(sorted(reasons.items()))
