"""df.llm and s.llm: pandas' rows in, pandas columns out; the verbs are faces/verbs.py's (pandas caches accessors)."""

from __future__ import annotations

import pandas as pd

from .. import constants
from ..collect.report import Report
from ..engine.outcome import Outcome
from ..plan import build as pipeline
from ..plan.rows import Rows
from . import accessors, frames
from .pandas_operators import PandasFrameOperators, PandasOperators, series_column
from .pandas_vectors import PandasVectors
from .verbs import FrameVerbs, RowVerbs, remember

accessors.clear(pd.DataFrame, pd.Series)  # the placeholders registered at import give way to the classes below


def _backend(call: tuple) -> str | None:
    """The dtype_backend= of the call (checked by the verb before planning)."""
    return call[1].get("dtype_backend")


@pd.api.extensions.register_dataframe_accessor("llm")
class DataFrameAccessor(FrameVerbs, PandasVectors, PandasFrameOperators):
    """Run a model over every row of a DataFrame."""

    def _rows(self) -> tuple[Rows, dict]:
        return frames.rows_of(self._obj), {}

    def _result(self, plan: pipeline.Plan, outcome: Outcome, call: tuple) -> pd.DataFrame:
        out = frames.to_frame(self._obj, plan, outcome, _backend(call))
        remember(out.attrs[constants.REPORT_ATTR], call)
        return out

    def _report(self) -> Report | None:
        return self._obj.attrs.get(constants.REPORT_ATTR)

    def _without(self, names: list[str]) -> pd.DataFrame:
        return self._obj.drop(columns=[c for c in names if c in self._obj])

    def _sweep_frame(self) -> pd.DataFrame:
        return self._obj

    def _held(self) -> pd.DataFrame:
        # A shallow copy under copy-on-write (pandas 3), else a deep one.
        cow = int(pd.__version__.split(".")[0]) >= 3 or pd.get_option("mode.copy_on_write") is True
        return self._obj.copy(deep=not cow)


@pd.api.extensions.register_series_accessor("llm")
class SeriesAccessor(RowVerbs, PandasVectors, PandasOperators):
    """Run a model over every value of a Series; "{}" in the template is the value."""

    def _rows(self) -> tuple[Rows, dict]:
        column = series_column(self._obj)
        # The Series' own values are not part of the result, so output names cannot clash with them.
        return frames.rows_of(self._obj.to_frame(name=column)), {"positional_column": column,
                                                                  "output_frame_columns": ()}

    def _result(self, plan: pipeline.Plan, outcome: Outcome, call: tuple) -> pd.Series | pd.DataFrame:
        return frames.to_series(self._obj.index, plan, outcome, _backend(call))
