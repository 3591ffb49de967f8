"""The semantic operators on Polars (faces/operators.py's hooks): positions and Arrow columns to Polars frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from . import polars_frames as frames
from .operators import OperatorVerbs
from .verbs import keep_report


class PolarsOperators(OperatorVerbs):
    """df.llm.filter / classify / join / top_k / rank / agg on a Polars DataFrame."""

    def _op_rows(self, frame: pl.DataFrame) -> frames.PolarsRows:
        return frames.rows_of(frame)

    def _op_take(self, frame: pl.DataFrame, positions: np.ndarray) -> pl.DataFrame:
        return frame.select(pl.all().gather(pl.Series(np.asarray(positions, dtype=np.int64))))

    def _op_assign(self, frame: pl.DataFrame, columns: dict) -> pl.DataFrame:
        return frame.with_columns([_series(name, values) for name, values in columns.items()])

    def _op_columns(self, columns: dict) -> pl.Series | pl.DataFrame:
        made = [_series(name, values) for name, values in columns.items()]
        return made[0] if len(made) == 1 else pl.DataFrame(made)

    def _op_labels(self, name: str, values: list, labels: list) -> pl.Series:
        return pl.Series(name, values, dtype=pl.List(pl.Enum(labels)))

    def _op_pairs(self, left: pl.DataFrame, right: pl.DataFrame, suffixes: tuple[str, str]) -> pl.DataFrame:
        both = set(left.columns) & set(right.columns)
        left = left.rename({c: f"{c}{suffixes[0]}" for c in both})
        right = right.rename({c: f"{c}{suffixes[1]}" for c in both})
        return left.hstack(right)

    def _op_arrow(self, frame: pl.DataFrame, column: str) -> pa.Array:
        return frame.get_column(column).to_arrow()

    def _op_table(self, columns: dict, like: pl.DataFrame, keys: list) -> pl.DataFrame:
        return pl.DataFrame([pl.Series(name, v, dtype=like.schema[name]) if name in keys else _series(name, v)
                             for name, v in columns.items()])

    def _op_done(self, out: Any, report: dict) -> Any:
        keep_report(out, self._op_report(report))
        return out


def _series(name: str, values: Any) -> pl.Series:
    """A column from the core (Arrow, numpy or a list) as Polars, in the dtypes generate's columns have."""
    if isinstance(values, pl.Series):
        return values.alias(name)
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return pl.Series(name, values).fill_nan(None)
    if isinstance(values, list):
        if all(v is None or isinstance(v, str) for v in values):
            return pl.Series(name, values, dtype=pl.String)
        return pl.Series(name, values)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return frames.series(name, values)
    return pl.Series(name, values)
