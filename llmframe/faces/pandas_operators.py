"""The semantic operators on pandas (faces/operators.py's hooks): positions and Arrow columns to DataFrames."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import constants
from ..collect.arrays import objects
from . import frames
from .operators import OperatorVerbs


class PandasOperators(OperatorVerbs):
    """df.llm.filter / classify / join / top_k / rank / agg."""

    def _op_rows(self, frame: pd.DataFrame) -> frames.PandasRows:
        return frames.rows_of(frame)

    def _op_take(self, frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
        return frame.iloc[np.asarray(positions, dtype=np.int64)]

    def _op_assign(self, frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
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
