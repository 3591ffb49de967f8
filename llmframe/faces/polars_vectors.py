"""Polars' side of the vector verbs (faces/vectors.py): rows gathered, columns added with with_columns, frames put
side by side with hstack; and the expression's embed, which runs when the query does."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from .. import constants
from ..options import embed_keywords
from ..providers import embeddings
from ..plan.template import TemplateLike
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
        official = given.get("base_url") is None  # a compatible server's model may give any length
        size = given.get("dimensions") or (embeddings.known_dimensions(given["model"]) if official else None)
        dtype = pl.Array(pl.Float32, size) if size else None  # unknown (a compatible server's model): as it comes

        def answer(values: pl.Series) -> pl.Series:
            if not len(values):
                return pl.Series(values.name, [], dtype=dtype or pl.Array(pl.Float32, 1))
            return values.llm.embed(template, **given).alias(values.name)

        return self._obj.map_batches(answer, return_dtype=dtype)
