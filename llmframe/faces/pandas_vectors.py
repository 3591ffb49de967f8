"""df.llm and s.llm's vector verbs: embed (plan.embed -> the engine -> collect), and search, sim_join and dedup
on a vector column (ops.vectors); validate, delegate, and turn the results into pandas."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import constants
from ..collect import vectors as vector_columns
from ..cost.estimate import Estimate
from ..engine import run as engine
from ..engine.loop import run_async, run_sync
from ..errors import ConfigError
from ..ops import vectors as ops
from ..options import FACE_ONLY, documented, embed_keywords
from ..plan import embed as embedding
from ..plan.template import TemplateLike
from ..providers.base import Provider
from ..providers import resolve
from . import frames


class VectorVerbs:
    """embed and the vector operations, shared by df.llm and s.llm (which say what a row is: _frame, _result)."""

    _obj: Any

    @documented
    def embed(self, template: TemplateLike = "{}", *, model: str | Provider = constants.DEFAULT_EMBEDDING_MODEL,
              output: str = constants.DEFAULT_EMBEDDING_OUTPUT, dimensions: int | None = None,
              task_type: str | None = None, truncate: bool = False, batch_size: int | None = None,
              errors: str = constants.ERROR_MODES[0], dtype_backend: str | None = None, usage: bool = False,
              missing: str = constants.MISSING_MODES[0], allow_no_placeholder: bool = False,
              cache: bool | str = True, cache_dir: str | None = None,
              max_concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
              max_attempts: int = constants.MAX_ATTEMPTS, max_failures_in_a_row: int = constants.BREAKER_FAILURES,
              timeout: float = constants.REQUEST_TIMEOUT_SECONDS, max_wait: float = constants.MAX_WAIT_SECONDS,
              progress: bool | None = None, api_key: str | None = None, base_url: str | None = None,
              provider_options: dict | None = None, prices: dict | None = None, max_cost: float | None = None,
              **unknown: Any) -> pd.DataFrame | pd.Series:
        """Embed the template's text for every row: a vector column (Arrow fixed_size_list<float32>) and its errors.

        template: generate's ("{title}: {body}"; on a Series "{}" is the value). Many rows go in one request;
        vectors are cached per row. llmframe.vectors(result["embedding"]) gives them as a 2-D numpy array.
        """
        plan = self._embed_plan(template, embed_keywords(locals()))
        return self._result(plan, run_sync(engine.start(plan)), None, dtype_backend=dtype_backend)

    @documented
    async def aembed(self, template: TemplateLike = "{}", *, model: str | Provider = constants.DEFAULT_EMBEDDING_MODEL,
                     output: str = constants.DEFAULT_EMBEDDING_OUTPUT, dimensions: int | None = None,
                     task_type: str | None = None, truncate: bool = False, batch_size: int | None = None,
                     errors: str = constants.ERROR_MODES[0], dtype_backend: str | None = None, usage: bool = False,
                     missing: str = constants.MISSING_MODES[0], allow_no_placeholder: bool = False,
                     cache: bool | str = True, cache_dir: str | None = None, max_concurrency: int | None = None,
                     rpm: float | None = None, tpm: float | None = None, max_attempts: int = constants.MAX_ATTEMPTS,
                     max_failures_in_a_row: int = constants.BREAKER_FAILURES,
                     timeout: float = constants.REQUEST_TIMEOUT_SECONDS, max_wait: float = constants.MAX_WAIT_SECONDS,
                     progress: bool | None = None, api_key: str | None = None, base_url: str | None = None,
                     provider_options: dict | None = None, prices: dict | None = None, max_cost: float | None = None,
                     **unknown: Any) -> pd.DataFrame | pd.Series:
        """The async twin of embed, for code that already runs an event loop."""
        plan = self._embed_plan(template, embed_keywords(locals()))
        return self._result(plan, await run_async(engine.start(plan)), None, dtype_backend=dtype_backend)

    @documented
    def estimate_embed(self, template: TemplateLike = "{}", *, model: str | Provider = constants.DEFAULT_EMBEDDING_MODEL,
                       output: str = constants.DEFAULT_EMBEDDING_OUTPUT, dimensions: int | None = None,
                       task_type: str | None = None, truncate: bool = False, batch_size: int | None = None,
                       errors: str = constants.ERROR_MODES[0], dtype_backend: str | None = None,
                       usage: bool = False,
                       missing: str = constants.MISSING_MODES[0], allow_no_placeholder: bool = False,
                       cache: bool | str = True, cache_dir: str | None = None, max_concurrency: int | None = None,
                       rpm: float | None = None, tpm: float | None = None,
                       max_attempts: int = constants.MAX_ATTEMPTS,
                       max_failures_in_a_row: int = constants.BREAKER_FAILURES,
                       timeout: float = constants.REQUEST_TIMEOUT_SECONDS,
                       max_wait: float = constants.MAX_WAIT_SECONDS, progress: bool | None = None,
                       api_key: str | None = None, base_url: str | None = None, provider_options: dict | None = None,
                       prices: dict | None = None, max_cost: float | None = None, **unknown: Any) -> Estimate:
        """A dry run of embed with the same arguments: rows, uncached rows, tokens, cost; sends nothing, needs no key."""
        given = embed_keywords(locals())
        given.update(api_key=api_key or "estimate-only", progress=False)
        return engine.estimate(self._embed_plan(template, given))

    def search(self, query: Any, *, on: str = constants.DEFAULT_EMBEDDING_OUTPUT, k: int = constants.SEARCH_K,
               score: str = constants.SCORE_COLUMN, **embed_options: Any) -> pd.DataFrame:
        """The k rows nearest to query (a text, embedded with embed_options, cached; or a vector), best first.

        Scores are cosine similarities. embed_options: embed's (model=, dimensions=, ...), as the column was made.
        """
        frame = self._vector_frame(on)
        matrix = self._matrix(frame, on)
        vector = self._query_vector(query, matrix.shape[1], embed_options)
        rows, scores = ops.search(matrix, vector, k=ops.check_k(k), inverse=ops.remembered_norms(matrix))
        out = frame.iloc[rows].copy()
        out[_free(score, out.columns)] = scores
        return out

    def sim_join(self, other: pd.DataFrame, *, on: str | tuple[str, str] = constants.DEFAULT_EMBEDDING_OUTPUT,
                 k: int = 1, threshold: float | None = None, score: str = constants.SCORE_COLUMN,
                 suffixes: tuple[str, str] = ("_left", "_right")) -> pd.DataFrame:
        """For each row, its k nearest rows of other (cosine similarity at least threshold), as a frame of pairs.

        on: the vector column of both frames, or (left's, right's). Columns both frames have get suffixes.
        """
        left_on, right_on = (on, on) if isinstance(on, str) else on
        left = self._vector_frame(left_on)
        if not isinstance(other, pd.DataFrame):
            raise ConfigError(f"other must be a DataFrame with a vector column, got {type(other).__name__}")
        a = self._matrix(left, left_on)
        b = _matrix_of(other, right_on, "other")
        if a.shape[1] != b.shape[1]:
            raise ConfigError(f"the vectors differ in length ({a.shape[1]} here, {b.shape[1]} in other): embed both "
                              "with the same model and dimensions")
        li, ri, scores = ops.sim_join(a, b, k=ops.check_k(k), threshold=ops.check_threshold(threshold, True))
        lpart = left.iloc[li].reset_index(drop=True)
        rpart = other.iloc[ri].reset_index(drop=True)
        both = set(lpart.columns) & set(rpart.columns)
        lpart = lpart.rename(columns={c: f"{c}{suffixes[0]}" for c in both})
        rpart = rpart.rename(columns={c: f"{c}{suffixes[1]}" for c in both})
        out = pd.concat([lpart, rpart], axis=1)
        out[_free(score, out.columns)] = scores
        return out

    def dedup(self, *, on: str = constants.DEFAULT_EMBEDDING_OUTPUT, threshold: float = constants.DEDUP_THRESHOLD,
              keep: str | None = None, group: str = "group") -> pd.DataFrame:
        """Near-duplicate groups: rows whose vectors are at least threshold alike (cosine) share a group id.

        keep=None adds the group column; keep="first" keeps each group's first row only.
        """
        frame = self._vector_frame(on)
        if keep not in (None, "first"):
            raise ConfigError(f"keep must be None (add a group column) or 'first', got {keep!r}")
        groups = ops.dedup(self._matrix(frame, on), threshold=ops.check_threshold(threshold, False))
        if keep == "first":
            first = np.zeros(len(groups), dtype=bool)
            first[np.unique(groups, return_index=True)[1]] = True
            return frame[first]
        out = frame.copy()
        out[_free(group, out.columns)] = groups
        return out

    def _embed_plan(self, template, given: dict):
        rows, extra = self._rows()
        model = given.pop("model")
        given = {k: v for k, v in given.items() if k not in FACE_ONLY}  # how the frame is built: not planned
        return embedding.embed_plan(rows, template, target=resolve(model), **given, **extra)

    def _vector_frame(self, on: str) -> pd.DataFrame:
        frame = self._obj.to_frame(name=on) if isinstance(self._obj, pd.Series) else self._obj
        if on not in frame.columns:
            raise ConfigError(f"no vector column {on!r}: make one with df.llm.embed(..., output={on!r}), or pass on=")
        return frame

    def _matrix(self, frame: pd.DataFrame, on: str) -> np.ndarray:
        return _matrix_of(frame, on, "the frame")

    def _query_vector(self, query: Any, size: int, embed_options: dict) -> np.ndarray:
        if isinstance(query, str):
            found = pd.Series([query]).llm.embed(progress=False, errors="raise", **embed_options)
            vector = vector_columns.to_matrix(found)[0]
        else:
            vector = np.asarray(query, dtype=np.float32).reshape(-1)
        if len(vector) != size:
            raise ConfigError(f"the query's vector has {len(vector)} numbers, the column's {size}: embed the query "
                              "with the model and dimensions the column was made with")
        return vector


def _matrix_of(frame: pd.DataFrame, on: str, name: str) -> np.ndarray:
    if on not in frame.columns:
        raise ConfigError(f"{name} has no vector column {on!r}; its columns are {list(frame.columns)}")
    try:
        return vector_columns.to_matrix(frame[on], name=f"column {on!r}", labels=frame.index)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"column {on!r} is not a vector column: {exc}") from None


def _free(name: str, columns) -> str:
    if name in columns:
        raise ConfigError(f"the frame already has a column {name!r}: pass another name (score= or group=)")
    return name


def vectors(column: Any) -> np.ndarray:
    """A vector column (a pandas Series made by embed, or Arrow) as a 2-D float32 numpy array, without copying
    where Arrow allows it (one chunk, no missing rows; missing rows become rows of NaN)."""
    return vector_columns.to_matrix(column)
