"""The semantic operators on pandas (faces/operators.py's hooks): positions and Arrow columns to DataFrames; on a
Series ("{}" is the value) filter, classify, top_k and rank, whose answers come back on the Series' index."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import constants
from ..collect.arrays import objects
from . import frames
from .operators import FrameOperatorVerbs, OperatorVerbs

SERIES_COLUMN = "value"  # what "{}" refers to when a Series has no name


def series_column(values: pd.Series) -> str:
    """The column a Series' values are read from: its name where that is a string, else SERIES_COLUMN."""
    name = values.name
    return name if isinstance(name, str) and name else SERIES_COLUMN


class PandasOperators(OperatorVerbs):
    """s.llm.filter / classify / top_k / rank on a Series; the hooks serve a DataFrame too."""

    def _op_rows(self, frame: pd.DataFrame | pd.Series) -> frames.PandasRows:
        if isinstance(frame, pd.Series):
            return frames.rows_of(frame.to_frame(name=series_column(frame)))
        return frames.rows_of(frame)

    def _op_reading(self) -> dict:
        return {"positional_column": series_column(self._obj)} if isinstance(self._obj, pd.Series) else {}

    def _op_added(self, columns: dict) -> Any:
        return self._op_columns(columns) if isinstance(self._obj, pd.Series) else self._op_assign(self._obj, columns)

    def _op_take(self, frame: pd.DataFrame | pd.Series, positions: np.ndarray) -> pd.DataFrame | pd.Series:
        return frame.iloc[np.asarray(positions, dtype=np.int64)]

    def _op_assign(self, frame: pd.DataFrame | pd.Series, columns: dict) -> pd.DataFrame:
        if isinstance(frame, pd.Series):  # a Series' values with their new columns: a frame
            frame = frame.to_frame(name=series_column(frame))
        return frame.assign(**{name: _series(values, frame.index) for name, values in columns.items()})

    def _op_columns(self, columns: dict) -> pd.Series | pd.DataFrame:
        made = {name: _series(values, self._obj.index) for name, values in columns.items()}
        if len(made) == 1:
            return next(iter(made.values())).rename(next(iter(made)))
        return pd.DataFrame(made, index=self._obj.index)

    def _op_labels(self, name: str, values: list, labels: list) -> np.ndarray:
        return objects(values)

    def _op_pairs(self, left: pd.DataFrame, right: pd.DataFrame, suffixes: tuple[str, str]) -> pd.DataFrame:
        left, right = left.reset_index(drop=True), right.reset_index(drop=True)
        both = set(left.columns) & set(right.columns)
        left = left.rename(columns={c: f"{c}{suffixes[0]}" for c in both})
        right = right.rename(columns={c: f"{c}{suffixes[1]}" for c in both})
        return pd.concat([left, right], axis=1)

    def _op_arrow(self, frame: pd.DataFrame, column: str) -> pd.Series:
        return frame[column]

    def _op_table(self, columns: dict, like: pd.DataFrame, keys: list) -> pd.DataFrame:
        out = pd.DataFrame({name: _series(v, None) if name not in keys else pd.Series(v, dtype=like[name].dtype)
                            for name, v in columns.items()})
        return out

    def _op_done(self, out: Any, report: dict) -> Any:
        out.attrs[constants.REPORT_ATTR] = self._op_report(report)
        return out


class PandasFrameOperators(FrameOperatorVerbs, PandasOperators):
    """df.llm.filter / classify / join / top_k / rank / agg."""


def _series(values: Any, index: pd.Index | None) -> pd.Series:
    """A column from the core (Arrow, numpy or a list) as pandas, in the dtypes generate's columns have."""
    if isinstance(values, list):
        values = objects(values) if any(isinstance(v, (list, dict)) for v in values) else _arrow(values)
    if isinstance(values, np.ndarray) and values.dtype != object:
        values = pd.array(values)
        return pd.Series(values, index=index if index is not None else None)
    index = index if index is not None else pd.RangeIndex(len(values))
    return frames.series(values, index)


def _arrow(values: list) -> Any:
    import pyarrow as pa

    made = pa.array(values)
    return made.cast(pa.large_string()) if pa.types.is_string(made.type) or pa.types.is_null(made.type) else made
