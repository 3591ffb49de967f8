"""pandas to and from the core: a DataFrame as the rows a plan renders from, Arrow columns back as pandas columns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import constants
from ..collect import columns as collector
from ..collect import arrays
from ..collect.arrays import Column
from ..plan.rows import first_bytes

if TYPE_CHECKING:
    from ..engine.outcome import Outcome
    from ..plan.build import Plan
    from ..plan.output import Output


class PandasRows:
    """A DataFrame as plan.rows.Rows: values are what pandas gives (Timestamps, pd.NA), so prompts and keys stay."""

    nulls = (pd.NA, pd.NaT)

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.columns = list(frame.columns)
        self.index_names = tuple(frame.index.names)

    def __len__(self) -> int:
        return len(self.frame)

    def values(self, column: Any, positions: np.ndarray | None = None) -> list:
        series = self.frame[column]
        return (series if positions is None else series.take(positions)).tolist()

    def missing(self, column: Any) -> np.ndarray:
        return self.frame[column].isna().to_numpy()

    def holds_objects(self, column: Any) -> bool:
        return self.frame[column].dtype == object

    def records(self) -> Iterator[tuple]:
        return self.frame.itertuples(index=False, name=None)

    def label(self, position: int) -> Any:
        return self.frame.index[position]

    def arrow(self, column: Any) -> pa.Array | pa.ChunkedArray | None:
        """The column in Arrow, for the run memo's fingerprints (no copy for Arrow-backed or numeric columns);
        None for Python objects, whose Arrow form would not say how they render."""
        series = self.frame[column]
        if series.dtype == object:
            return None
        try:
            return pa.array(series)
        except (pa.ArrowException, TypeError, ValueError):
            return None

    def unusable(self, column: Any) -> str | None:
        found = first_bytes(self, column)
        if found is None:
            return None
        return (f"column {column!r} holds bytes (first at index {self.label(found)!r}); "  # a model would get b'...'
                "decode it to text first, e.g. df[col].str.decode('utf-8')")


def rows_of(frame: pd.DataFrame) -> PandasRows:
    """The frame as the rows a plan renders from."""
    return PandasRows(frame)


_MASKED = {pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype(), pa.bool_(): pd.BooleanDtype()}


def text_dtype() -> pd.StringDtype:
    """pandas' own dtype for text, as it infers it for the input's columns: `str` on pandas 3 (NaN for missing);
    on pandas 2, which infers object, its dedicated `string` (<NA>)."""
    inferred = pd.Series(["text"]).dtype  # at call time: pandas 2's future.infer_string may be switched on
    return inferred if isinstance(inferred, pd.StringDtype) else pd.StringDtype()


def series(values: Column, index: pd.Index, backend: str | None = None, nested: pa.DataType | None = None) -> pd.Series:
    """One collected column as pandas: text in pandas' default string dtype, Int64 / Float64 / boolean,
    category, datetime64, or object; backend: dtype_backend= as pandas' readers take it (constants.DTYPE_BACKENDS)."""
    if backend == "pyarrow":
        return _arrow_series(values, index, nested)
    if isinstance(values, np.ndarray):  # Python objects: lists, dicts, validated models
        return pd.Series(values, index=index, dtype=object)
    kind = values.type
    if kind == pa.large_string():  # zero-copy where pandas keeps text in Arrow (pandas 3, or pyarrow storage)
        dtype = pd.StringDtype() if backend == "numpy_nullable" else text_dtype()  # "string", <NA>, as read_csv's
        return pd.Series(dtype.__from_arrow__(values), index=index)
    if kind in _MASKED:
        return pd.Series(_MASKED[kind].__from_arrow__(values), index=index)
    if pa.types.is_dictionary(kind):
        whole = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        codes = whole.indices.fill_null(-1).to_numpy()
        return pd.Series(pd.Categorical.from_codes(codes, categories=whole.dictionary.to_pylist()), index=index)
    if pa.types.is_fixed_size_list(kind):  # vectors (embed): zero-copy, as pandas' ArrowDtype
        return pd.Series(pd.arrays.ArrowExtensionArray(values), index=index)
    if pa.types.is_timestamp(kind):
        return pd.Series(values.to_pandas().array, index=index)
    raise TypeError(f"no pandas column for the Arrow type {kind}")  # a collector bug, not a user's mistake


def _arrow_series(values: Column, index: pd.Index, nested: pa.DataType | None) -> pd.Series:
    """A column as pd.ArrowDtype, as read_parquet(dtype_backend="pyarrow") gives it: the Arrow array as it is
    (zero-copy; categories stay dictionary-encoded); Python objects built with their field's Arrow type."""
    if isinstance(values, np.ndarray):
        if nested is None:  # a field the schema leaves open, or whole validated objects: kept as they are
            return pd.Series(values, index=index, dtype=object)
        try:
            values = pa.array(values.tolist(), type=nested)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return pd.Series(values, index=index, dtype=object)  # a validator widened a value past the type
    return pd.Series(pd.arrays.ArrowExtensionArray(values), index=index)


def _converted(columns: dict[str, Column], index: pd.Index, out: Output, backend: str | None) -> dict[str, pd.Series]:
    """Every collected column as pandas, each Arrow array let go once converted (masked numbers are copied)."""
    nested = arrays.nested_types(out) if backend == "pyarrow" else {}
    return {name: series(columns.pop(name), index, backend, nested.get(name)) for name in list(columns)}


def to_frame(frame: pd.DataFrame, plan: Plan, outcome: Outcome, dtype_backend: str | None = None) -> pd.DataFrame:
    """A new frame: the input columns, then the output columns and the error column (in dtype_backend's dtypes)."""
    columns, report = collector.collect(plan, outcome)
    out = frame.assign(**_converted(columns, frame.index, plan.output, dtype_backend))
    out.attrs[constants.REPORT_ATTR] = report
    collector.raise_if_asked(plan, report, out)
    return out


def to_series(index: pd.Index, plan: Plan, outcome: Outcome,
              dtype_backend: str | None = None) -> pd.Series | pd.DataFrame:
    """A text answer per value (a Series on index), or a structured output's columns (a DataFrame).

    Per-row errors are counted and sampled in the report, not returned as a column.
    """
    columns, report = collector.collect(plan, outcome)
    columns.pop(plan.output.error_column, None)
    made = _converted(columns, index, plan.output, dtype_backend)
    out = next(iter(made.values())) if len(made) == 1 else pd.DataFrame(made)
    if isinstance(out, pd.Series):
        out.name = plan.output.names[0]
    out.attrs[constants.REPORT_ATTR] = report
    collector.raise_if_asked(plan, report, out)
    return out
