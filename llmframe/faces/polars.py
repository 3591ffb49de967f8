"""The llm namespaces on Polars (DataFrame, Series, Expr, LazyFrame), registered with Polars' own extension API.

Eager forms run at once, like pandas' accessor; the expression and LazyFrame forms check the call when it is
made (options, output schema; a LazyFrame's columns too) and run the model when the query is collected.
The verbs and their keywords are faces/verbs.py's, shared with pandas.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ..collect import columns as collector
from ..collect.report import Report
from ..engine.outcome import Outcome
from ..plan import build as pipeline
from ..plan.rows import Rows
from . import accessors
from . import polars_frames as frames
from .polars_operators import LazyOperators, PolarsFrameOperators, PolarsOperators
from .polars_vectors import ExprEmbed, LazyEmbed, PolarsVectors
from .verbs import FrameVerbs, Generate, RowVerbs, empty_columns, keep_report, kept_report, remember



accessors.clear(pl.DataFrame, pl.Series, pl.Expr, pl.LazyFrame)  # the placeholders give way to the classes below


class _ArrowColumns:
    """Polars' columns are Arrow's already, in Polars' own dtypes: dtype_backend= (pandas') is refused, not ignored."""

    dtype_backends = None
    no_dtype_backend = ("dtype_backend= is for pandas results; a Polars frame's columns are Arrow-backed Polars "
                        "dtypes already: leave it out (or convert with .to_pandas(types_mapper=pd.ArrowDtype))")


@pl.api.register_dataframe_namespace("llm")
class DataFrameNamespace(_ArrowColumns, FrameVerbs, PolarsVectors, PolarsFrameOperators):
    """Run a model over every row of a Polars DataFrame."""

    def _rows(self) -> tuple[Rows, dict]:
        return frames.rows_of(self._obj), {}

    def _result(self, plan: pipeline.Plan, outcome: Outcome, call: tuple) -> pl.DataFrame:
        out, report = frames.to_frame(self._obj, plan, outcome)
        keep_report(out, remember(report, call))
        collector.raise_if_asked(plan, report, out)
        return out

    def _report(self) -> Report | None:
        return kept_report(self._obj)

    def _without(self, names: list[str]) -> pl.DataFrame:
        return self._obj.drop([c for c in names if c in self._obj.columns])

    def _sweep_frame(self) -> Any:
        return self._obj.to_pandas()  # a sweep's table, summary and plot are pandas' (README "Polars")


@pl.api.register_series_namespace("llm")
class SeriesNamespace(_ArrowColumns, RowVerbs, PolarsVectors, PolarsOperators):
    """Run a model over every value of a Series ("{}" is the value), or over a struct Series' fields."""

    def _rows(self) -> tuple[Rows, dict]:
        return frames.series_rows(self._obj)

    def _result(self, plan: pipeline.Plan, outcome: Outcome, call: tuple) -> pl.Series | pl.DataFrame:
        out, report = frames.to_series(plan, outcome)
        collector.raise_if_asked(plan, report, out)
        return out


@pl.api.register_expr_namespace("llm")
class ExprNamespace(_ArrowColumns, Generate, ExprEmbed):
    """pl.col("review").llm.generate(...) and pl.struct("title", "body").llm.generate(...): one answer column
    (a struct of fields for a structured output), computed when the query runs; .llm.embed(...) likewise."""

    def _run(self, call: tuple) -> pl.Expr:
        template, given = call
        # The call checked now, on a stand-in of one text column: the expression's own columns are known only
        # when it runs. The answer's dtype is what a run of no rows gives.
        probe = {**given, "positional_column": frames.SERIES_COLUMN, "output_frame_columns": ()}
        rows = frames.rows_of(pl.DataFrame({frames.SERIES_COLUMN: pl.Series([], dtype=pl.String)}))
        output, made = empty_columns(rows, "{}", probe)
        made.pop(output.error_column, None)  # an expression gives one column: errors are in the report
        types = frames.dtypes_of(output, made)
        dtype = next(iter(types.values())) if len(types) == 1 else pl.Struct(types)

        def answer(values: pl.Series) -> pl.Series:
            if not len(values):
                return pl.Series(values.name, [], dtype=dtype)
            out = values.llm.generate(template, **given)
            out = out.to_struct(values.name) if isinstance(out, pl.DataFrame) else out
            return frames.conform(out, dtype)

        return self._obj.map_batches(answer, return_dtype=dtype)


@pl.api.register_lazyframe_namespace("llm")
class LazyFrameNamespace(_ArrowColumns, Generate, LazyOperators, LazyEmbed):
    """lf.llm.generate(...): a LazyFrame with the answer columns; the model runs when it is collected. So do the
    operators filter, classify, top_k, rank and agg (faces/polars_operators.py's LazyOperators) and embed
    (faces/polars_vectors.py's LazyEmbed)."""

    def _run(self, call: tuple) -> pl.LazyFrame:
        template, given = call
        schema = self._obj.collect_schema()  # no data is read: the plan checks the call against the columns
        output, made = empty_columns(frames.rows_of(pl.DataFrame(schema=schema)), template, given)
        types = frames.dtypes_of(output, made)

        def answer(frame: pl.DataFrame) -> pl.DataFrame:
            out = frame.llm.generate(template, **given)
            return out.with_columns(frames.conform(out.get_column(n), t) for n, t in types.items())

        return self._obj.map_batches(answer, schema={**schema, **types})
