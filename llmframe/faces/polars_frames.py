"""Polars to and from the core: a Polars DataFrame as the rows a plan renders from, Arrow columns back as
Polars columns (pl.from_arrow: no pandas, and the answers' texts are not copied into Python strings)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..collect import arrays
from ..collect import columns as collector
from ..collect.arrays import Column
from ..collect.report import Report

if TYPE_CHECKING:
    from ..plan.output import Output
    from ..engine.outcome import Outcome
    from ..plan.build import Plan

_OBJECTS = (pl.List, pl.Array, pl.Struct, pl.Object)  # values a bare {column} renders as JSON (or an object's str)


class PolarsRows:
    """A Polars DataFrame as plan.rows.Rows: values are Polars' Python values (None for null), so a pandas frame
    of the same values renders the same prompts, and so the same cache keys."""

    nulls = ()  # Polars gives None for null, at any depth
    index_names = ()  # Polars frames have no index

    def __init__(self, frame: pl.DataFrame):
        self.frame = frame
        self.columns = list(frame.columns)

    def __len__(self) -> int:
        return self.frame.height

    def values(self, column: str, positions: np.ndarray | None = None) -> list:
        series = self.frame.get_column(column)
        return (series if positions is None else series.gather(positions)).to_list()

    def missing(self, column: str) -> np.ndarray:
        return self.frame.get_column(column).is_null().to_numpy()

    def holds_objects(self, column: str) -> bool:
        return isinstance(self.frame.schema[column], _OBJECTS)

    def records(self) -> Iterator[tuple]:
        return self.frame.iter_rows()

    def label(self, position: int) -> int:
        return position  # the row number: Polars frames have no index

    def arrow(self, column: str) -> pa.Array | pa.ChunkedArray | None:
        """The column in Arrow, for the run memo's fingerprints; None for Python objects."""
        if isinstance(self.frame.schema[column], _OBJECTS):
            return None
        return self.frame.get_column(column).to_arrow()

    def unusable(self, column: str) -> str | None:
        if self.frame.schema[column] == pl.Binary:  # a model would get b'...'
            return (f"column {column!r} is pl.Binary; decode it to text first, e.g. "
                    f"df.with_columns(pl.col({column!r}).cast(pl.String))")
        return None


def rows_of(frame: pl.DataFrame) -> PolarsRows:
    """The frame as the rows a plan renders from."""
    return PolarsRows(frame)


SERIES_COLUMN = "value"  # what "{}" refers to when a Series has no name


def series_rows(values: pl.Series) -> tuple[PolarsRows, dict]:
    """A Series' rows: a struct's fields as columns ({title}), else its values as one column ({}); and how to
    read them (plan()'s keywords)."""
    if isinstance(values.dtype, pl.Struct):
        return rows_of(values.struct.unnest()), {"output_frame_columns": ()}
    column = values.name or SERIES_COLUMN
    # The Series' own values are not part of the result, so output names cannot clash with them.
    return rows_of(values.to_frame(column)), {"positional_column": column, "output_frame_columns": ()}


def series(name: str, values: Column, nested: pa.DataType | None = None) -> pl.Series:
    """One collected column as Polars: String, Int64 / Float64 / Boolean, Enum, Datetime, List / Struct, or Object.

    nested: the Arrow type of a field the collector gave as Python objects (lists, nested models), from its schema.
    """
    if isinstance(values, np.ndarray):
        if nested is not None:
            try:
                built = pl.Series(name, pa.array(values.tolist(), type=nested))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                pass  # a value the schema's type cannot hold (a validator widened it): kept as it is
            else:
                enums = _with_enums(nested)
                return built if enums is None else built.cast(enums)
        return pl.Series(name, values.tolist(), dtype=pl.Object)
    if pa.types.is_dictionary(values.type):
        whole = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        categories = whole.dictionary.to_pylist()
        decoded = pl.Series(name, pc.take(whole.dictionary, whole.indices))
        # pl.Enum holds strings only: numeric categories (Literal[1, 2, 3]) stay numbers.
        return decoded.cast(pl.Enum(categories)) if all(isinstance(c, str) for c in categories) else decoded
    if values.type == pa.large_string():
        return _text(name, values)
    return pl.Series(name, values)


def _text(name: str, values: pa.Array | pa.ChunkedArray) -> pl.Series:
    """Texts as pl.String without a second copy of their views: Polars adopts Arrow's string_view buffers as they
    are, where from large_string it builds its own views (16 bytes a row) and keeps the Arrow offsets alive too."""
    if values.null_count == len(values):  # the error column of a run without errors: no views at all
        return pl.repeat(None, len(values), dtype=pl.String, eager=True).alias(name)
    return pl.Series(name, pc.cast(values, pa.string_view()))


def _with_enums(kind: pa.DataType) -> pl.DataType | None:
    """The Polars dtype of a nested Arrow type with its enum fields (arrays.ENUM_KEY) as pl.Enum; None if it has none."""
    def walk(kind: pa.DataType, field: pa.Field | None) -> tuple[pl.DataType, bool]:
        if field is not None and field.metadata and arrays.ENUM_KEY in field.metadata:
            return pl.Enum(json.loads(field.metadata[arrays.ENUM_KEY])), True
        if pa.types.is_struct(kind):
            parts = [(kind.field(i).name, *walk(kind.field(i).type, kind.field(i))) for i in range(kind.num_fields)]
            return pl.Struct({n: t for n, t, _ in parts}), any(e for _, _, e in parts)
        if pa.types.is_large_list(kind):
            item, enum = walk(kind.value_type, kind.value_field)
            return pl.List(item), enum
        return pl.Series(pa.array([], type=kind)).dtype, False

    dtype, enum = walk(kind, None)
    return dtype if enum else None


def converted(out: Output, columns: dict[str, Column]) -> list[pl.Series]:
    """Every collected column as Polars, each Arrow array let go once converted."""
    nested = arrays.nested_types(out)
    return [series(name, columns.pop(name), nested.get(name)) for name in list(columns)]


def to_frame(frame: pl.DataFrame, plan: Plan, outcome: Outcome) -> tuple[pl.DataFrame, Report]:
    """A new frame: the input columns, then the output columns and the error column; and the run report."""
    columns, report = collector.collect(plan, outcome)
    out = frame.hstack(converted(plan.output, columns))
    return out, report


def to_series(plan: Plan, outcome: Outcome) -> tuple[pl.Series | pl.DataFrame, Report]:
    """A text answer per value (a Series), or the structured output's and usage columns (a DataFrame); the report.

    Per-row errors are counted and sampled in the report, not returned as a column.
    """
    columns, report = collector.collect(plan, outcome)
    columns.pop(plan.output.error_column, None)
    made = converted(plan.output, columns)
    return (made[0] if len(made) == 1 else pl.DataFrame(made)), report


def dtypes_of(out: Output, columns: dict[str, Column]) -> dict[str, pl.DataType]:
    """The Polars dtype of each column a run gives, from the columns of a run of no rows (lazy faces' schemas).

    A date-time field is declared in UTC: a run's answers may or may not carry an offset (conform() says so).
    """
    types = {s.name: s.dtype for s in converted(out, dict(columns))}
    return {name: pl.Datetime("us", "UTC") if isinstance(t, pl.Datetime) else t for name, t in types.items()}


def conform(series_: pl.Series, dtype: pl.DataType) -> pl.Series:
    """A run's column as the dtype its lazy schema declared: naive date-times read as UTC (as the collector reads
    them beside aware ones)."""
    if isinstance(dtype, pl.Datetime) and isinstance(series_.dtype, pl.Datetime) and series_.dtype.time_zone is None:
        series_ = series_.dt.replace_time_zone("UTC")
    return series_ if series_.dtype == dtype else series_.cast(dtype)
