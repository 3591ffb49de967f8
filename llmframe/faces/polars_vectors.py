"""Polars' side of the vector verbs (faces/vectors.py): rows gathered, columns added with with_columns, frames put
side by side with hstack; and the expression's and the LazyFrame's embed, which run when the query does."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from .. import constants
from ..errors import ConfigError
from ..options import embed_keywords
from ..providers import embeddings
from ..plan.template import TemplateLike
from .polars_frames import conform
from .vectors import Embed, VectorVerbs
from .verbs import check_backend


class PolarsVectors(VectorVerbs):
    """VectorVerbs on Polars frames and Series."""

    _frame_name = "Polars DataFrame"

    def _vector_frame(self, on: str) -> pl.DataFrame:
        return self._obj.to_frame(on) if isinstance(self._obj, pl.Series) else self._obj

    def _is_frame(self, other: Any) -> bool:
        return isinstance(other, pl.DataFrame)

    def _columns(self, frame: pl.DataFrame) -> list:
        return frame.columns

    def _labels(self, frame: pl.DataFrame) -> Any:
        return None  # Polars frames have no index: rows are named by their number

    def _arrow_column(self, frame: Any, on: str | None) -> Any:
        return frame if on is None else frame.get_column(on)

    def _take(self, frame: pl.DataFrame, positions: np.ndarray) -> pl.DataFrame:
        return frame.select(pl.all().gather(pl.Series(np.asarray(positions, dtype=np.int64))))

    def _with_column(self, frame: pl.DataFrame, name: str, values: np.ndarray) -> pl.DataFrame:
        return frame.with_columns(pl.Series(name, values))

    def _renamed(self, frame: pl.DataFrame, names: dict) -> pl.DataFrame:
        return frame.rename(names)

    def _side_by_side(self, left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
        return left.hstack(right)

    def _many_values(self, texts: list[str]) -> pl.Series:
        return pl.Series(texts, dtype=pl.String)


class ExprEmbed(Embed):
    """pl.col("text").llm.embed(...) and pl.struct(...).llm.embed("{title}: {body}"): a vector column (pl.Array)
    computed when the query runs; the call is checked now."""

    def _embed(self, template: TemplateLike, values: dict) -> pl.Expr:
        given = embed_keywords(values)
        check_backend(self, given.get("dtype_backend"))
        # Checked now, on a stand-in of no rows (planning sends nothing: no key needed); the columns are known
        # only when the query runs.
        probe = pl.Series(constants.DEFAULT_OUTPUT, [], dtype=pl.String).llm
        probe._embed_plan("{}", {**given, "progress": False,
                                     "api_key": given.get("api_key") or constants.ESTIMATE_API_KEY})
        size = _known_size(given)
        dtype = pl.Array(pl.Float32, size) if size else None  # unknown (a compatible server's model): as it comes

        def answer(values: pl.Series) -> pl.Series:
            if not len(values):
                return pl.Series(values.name, [], dtype=dtype or pl.Array(pl.Float32, 1))
            return values.llm.embed(template, **given).alias(values.name)

        return self._obj.map_batches(answer, return_dtype=dtype)


class LazyEmbed(Embed):
    """lf.llm.embed(...): a LazyFrame with the vector column (and its errors, usage columns where asked); the
    model runs when the query is collected. The call is checked now, against the LazyFrame's schema."""

    def _embed(self, template: TemplateLike, values: dict) -> pl.LazyFrame:
        given = embed_keywords(values)
        check_backend(self, given.get("dtype_backend"))
        size = _known_size(given)
        if size is None:
            raise ConfigError(f"a LazyFrame's columns are known before its query runs, so embed on one needs the "
                              f"vectors' length: pass dimensions= (the model {given['model']!r} of a compatible "
                              "server may give any length), or collect() first")
        schema = self._obj.collect_schema()  # no data is read: the call is checked on a frame of no rows
        probe = {**given, "progress": False, "api_key": given.get("api_key") or constants.ESTIMATE_API_KEY}
        made = pl.DataFrame(schema=schema).llm.embed(template, **probe).schema
        types = {name: dtype for name, dtype in made.items() if name not in schema}
        types[given["output"]] = pl.Array(pl.Float32, size)

        def answer(frame: pl.DataFrame) -> pl.DataFrame:
            out = frame.llm.embed(template, **given)
            return out.with_columns(conform(out.get_column(name), dtype) for name, dtype in types.items())

        return self._obj.map_batches(answer, schema={**schema, **types})


def _known_size(given: dict) -> int | None:
    """The vectors' length known before any is made: dimensions=, or an official model's; None where unknown."""
    official = given.get("base_url") is None  # a compatible server's model may give any length
    return given.get("dimensions") or (embeddings.known_dimensions(given["model"]) if official else None)
