"""The semantic operators on Polars (faces/operators.py's hooks): positions and Arrow columns to Polars frames; on a
Series ("{}" is the value, or a struct's fields) filter, classify, top_k and rank; on a LazyFrame the same four,
checked when called and run when the query is collected."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from .. import constants
from ..errors import ConfigError
from ..ops import ranking
from ..providers.base import Provider
from . import polars_frames as frames
from .operators import FrameOperatorVerbs, OperatorVerbs
from .verbs import keep_report


class PolarsOperators(OperatorVerbs):
    """s.llm.filter / classify / top_k / rank on a Polars Series; the hooks serve a DataFrame too."""

    def _op_rows(self, frame: pl.DataFrame | pl.Series) -> frames.PolarsRows:
        return frames.series_rows(frame)[0] if isinstance(frame, pl.Series) else frames.rows_of(frame)

    def _op_reading(self) -> dict:
        if not isinstance(self._obj, pl.Series):
            return {}
        return {k: v for k, v in frames.series_rows(self._obj)[1].items() if k != "output_frame_columns"}

    def _op_added(self, columns: dict) -> Any:
        return self._op_columns(columns) if isinstance(self._obj, pl.Series) else self._op_assign(self._obj, columns)

    def _op_take(self, frame: pl.DataFrame | pl.Series, positions: np.ndarray) -> pl.DataFrame | pl.Series:
        at = pl.Series(np.asarray(positions, dtype=np.int64))
        return frame.gather(at) if isinstance(frame, pl.Series) else frame.select(pl.all().gather(at))

    def _op_assign(self, frame: pl.DataFrame | pl.Series, columns: dict) -> pl.DataFrame:
        if isinstance(frame, pl.Series):  # a Series' values with their new columns: a frame
            frame = frame.to_frame(frame.name or frames.SERIES_COLUMN)
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


class PolarsFrameOperators(FrameOperatorVerbs, PolarsOperators):
    """df.llm.filter / classify / join / top_k / rank / agg on a Polars DataFrame."""


class LazyOperators:
    """lf.llm.filter / classify / top_k / rank: the DataFrame's verbs (the same arguments), checked now on a frame
    of the LazyFrame's schema and no rows (nothing is read or sent), run over the whole frame when it is
    collected. dry_run=True and mask=True are the DataFrame's: collect() first."""

    _obj: pl.LazyFrame

    def filter(self, template: Any, **arguments: Any) -> pl.LazyFrame:
        """The rows for which the model answers true (DataFrame.llm.filter's arguments), when collected."""
        return self._lazy("filter", template, arguments)

    def classify(self, template: Any, **arguments: Any) -> pl.LazyFrame:
        """The frame with a label column (DataFrame.llm.classify's arguments), when collected."""
        return self._lazy("classify", template, arguments)

    def top_k(self, template: Any, **arguments: Any) -> pl.LazyFrame:
        """The k best rows with their scores (DataFrame.llm.top_k's arguments), when collected."""
        return self._lazy("top_k", template, arguments)

    def rank(self, template: Any, **arguments: Any) -> pl.LazyFrame:
        """Every row ordered by score (DataFrame.llm.rank's arguments), when collected."""
        return self._lazy("rank", template, arguments)

    def _lazy(self, verb: str, template: Any, arguments: dict) -> pl.LazyFrame:
        for name in ("dry_run", "mask"):
            if arguments.get(name):
                raise ConfigError(f"{name}=True on a LazyFrame: an estimate reads the rows and a mask is a Series; "
                                  f"collect() first: lf.collect().llm.{verb}(..., {name}=True)")
        probe = {k: v for k, v in arguments.items() if k not in ("k", "margin")}
        if verb == "top_k":  # a frame of no rows has no top k: its result has rank's columns
            ranking.check_k(arguments.get("k", 10), 1 << 62)
            ranking.check_margin(arguments.get("margin", constants.TOP_K_MARGIN))
        model = arguments.get("model")
        probe.update(progress=False, cache=False, mode=constants.BATCH_MODES[0], max_cost=None,
                     api_key=arguments.get("api_key") or (None if isinstance(model, Provider) else
                                                         constants.ESTIMATE_API_KEY))
        schema = self._obj.collect_schema()  # no data is read
        made = getattr(pl.DataFrame(schema=schema).llm, "rank" if verb == "top_k" else verb)(template, **probe)
        types = dict(made.schema)

        def run(frame: pl.DataFrame) -> pl.DataFrame:
            out = getattr(frame.llm, verb)(template, **arguments)
            return out.with_columns(frames.conform(out.get_column(n), t) for n, t in types.items())

        return self._obj.map_batches(run, schema=types)


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
