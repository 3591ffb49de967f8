"""pandas' side of the vector verbs (faces/vectors.py): rows taken with their index, columns added by assign."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .vectors import VectorVerbs


class PandasVectors(VectorVerbs):
    """VectorVerbs on pandas frames and Series."""

    def _vector_frame(self, on: str) -> pd.DataFrame:
        return self._obj.to_frame(name=on) if isinstance(self._obj, pd.Series) else self._obj

    def _is_frame(self, other: Any) -> bool:
        return isinstance(other, pd.DataFrame)

    def _columns(self, frame: pd.DataFrame) -> list:
        return list(frame.columns)

    def _labels(self, frame: pd.DataFrame) -> Any:
        return frame.index

    def _arrow_column(self, frame: Any, on: str | None) -> Any:
        return frame if on is None else frame[on]

    def _take(self, frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
        return frame.iloc[positions]

    def _with_column(self, frame: pd.DataFrame, name: str, values: np.ndarray) -> pd.DataFrame:
        return frame.assign(**{name: values})

    def _renamed(self, frame: pd.DataFrame, names: dict) -> pd.DataFrame:
        return frame.rename(columns=names)

    def _side_by_side(self, left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([left.reset_index(drop=True), right.reset_index(drop=True)], axis=1)

    def _many_values(self, texts: list[str]) -> pd.Series:
        return pd.Series(texts)

