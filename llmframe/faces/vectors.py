"""df.llm and s.llm's vector verbs, on pandas and Polars alike: embed (plan.embed -> the engine -> collect), and
search, sim_join and dedup on a vector column (ops.vectors). They validate and delegate; what a frame is (take
rows, add a column, put two frames side by side) is the face's, through the hooks at the end of VectorVerbs."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import constants
from ..collect import vectors as vector_columns
from ..cost import estimate as estimate_
from ..cost.estimate import Estimate
from ..engine import run as engine
from ..engine.loop import run_async, run_sync
from ..errors import ConfigError
from ..options import FACE_ONLY, documented, embed_keywords
from ..plan.build import Plan
from ..plan.template import TemplateLike
from ..providers.base import Provider
from ..providers import resolve
from .lazy import module
from .verbs import check_backend

# Imported on a verb's first use: a plain generate call does not pay for them (README "Cold start").
ops, embedding = module("llmframe.ops.vectors"), module("llmframe.plan.embed")

EMBED = "embed"  # the verb a remembered call repeats (retry_failed): (template, keywords, EMBED, made columns)


class Embed:
    """embed alone (the Polars expression's verb): eager faces run it now, the expression when the query runs."""

    _obj: Any

    def __init__(self, obj):
        self._obj = obj

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
              provider_options: dict | None = None, mode: str = constants.BATCH_MODES[0],
              poll_interval: float | None = None, retry_online: bool = False, prices: dict | None = None,
              max_cost: float | None = None,
              **unknown: Any) -> Any:
        """Embed the template's text for every row: a vector column (Arrow fixed_size_list<float32>) and its errors.

        template: generate's ("{title}: {body}"; on a Series "{}" is the value). Many rows go in one request;
        vectors are cached per row. llmframe.vectors(result["embedding"]) gives them as a 2-D numpy array.
        """
        return self._embed(template, locals())

    def _embed(self, template: TemplateLike, values: dict) -> Any:
        """Plan, execute and collect an embed call (its locals()) now."""
        plan, call = self._embed_call(template, values)
        return self._result(plan, run_sync(engine.start(plan)), call)

    def _embed_call(self, template: TemplateLike, values: dict) -> tuple[Plan, tuple]:
        """The plan of an embed call (its locals()), and the call as retry_failed repeats it."""
        given = embed_keywords(values)
        check_backend(self, given.get("dtype_backend"))
        plan = self._embed_plan(template, dict(given))
        return plan, (template, given, EMBED, tuple(plan.output.names))

    def _embed_plan(self, template, given: dict):
        rows, extra = self._rows()
        model = given.pop("model")
        given = {k: v for k, v in given.items() if k not in FACE_ONLY}  # how the frame is built: not planned
        return embedding.embed_plan(rows, template, target=resolve(model), **given, **extra)


class VectorVerbs(Embed):
    """embed and the vector operations, shared by every face (which says what a row is: _rows, _result)."""

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
                     provider_options: dict | None = None, mode: str = constants.BATCH_MODES[0],
              poll_interval: float | None = None, retry_online: bool = False, prices: dict | None = None,
              max_cost: float | None = None,
                     **unknown: Any) -> Any:
        """The async twin of embed, for code that already runs an event loop."""
        plan, call = self._embed_call(template, locals())
        return self._result(plan, await run_async(engine.start(plan)), call)

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
                       mode: str = constants.BATCH_MODES[0], poll_interval: float | None = None,
                       retry_online: bool = False,
                       prices: dict | None = None, max_cost: float | None = None, **unknown: Any) -> Estimate:
        """A dry run of embed with the same arguments: rows, uncached rows, tokens, cost; sends nothing, needs no key."""
        given = embed_keywords(locals())
        check_backend(self, given.get("dtype_backend"))
        if mode not in estimate_.MODES:
            raise ConfigError(f"mode must be one of {estimate_.MODES}, got {mode!r}")
        # mode= says which prices to use here: the plan is an online one (nothing is sent, no key is needed).
        given.update(mode=constants.BATCH_MODES[0], api_key=api_key or constants.ESTIMATE_API_KEY, progress=False)
        return engine.estimate(self._embed_plan(template, given), mode=mode)

    def search(self, query: Any, *, on: str = constants.DEFAULT_EMBEDDING_OUTPUT, k: int = constants.SEARCH_K,
               score: str = constants.SCORE_COLUMN, **embed_options: Any) -> Any:
        """The k rows nearest to query (a text, embedded with embed_options, cached; or a vector), best first.

        Scores are cosine similarities. embed_options: embed's (model=, dimensions=, ...), as the column was made.
        Many queries at once (a list of texts, or a 2-D array of vectors): one read of the vectors serves all,
        and the result has a "query" column (the query's position) before the score.
        """
        frame = self._vector_frame(on)
        matrix = self._matrix_of(frame, on, "the frame")
        many = _many(query)
        vectors = self._query_vectors(query if many else [query], matrix.shape[1], embed_options)
        rows, scores = ops.search_many(matrix, vectors, k=ops.check_k(k), inverse=ops.remembered_norms(matrix))
        taken = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        out = self._take(frame, taken)
        if many:
            numbers = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
            out = self._with_column(out, _free("query", self._columns(out)), numbers)
        return self._with_column(out, _free(score, self._columns(out)), np.concatenate(scores))

    def sim_join(self, other: Any, *, on: str | tuple[str, str] = constants.DEFAULT_EMBEDDING_OUTPUT,
                 k: int = 1, threshold: float | None = None, score: str = constants.SCORE_COLUMN,
                 suffixes: tuple[str, str] = ("_left", "_right")) -> Any:
        """For each row, its k nearest rows of other (cosine similarity at least threshold), as a frame of pairs.

        on: the vector column of both frames, or (left's, right's). Columns both frames have get suffixes.
        """
        left_on, right_on = (on, on) if isinstance(on, str) else on
        left = self._vector_frame(left_on)
        if not self._is_frame(other):
            raise ConfigError(f"other must be a {self._frame_name} with a vector column, got {type(other).__name__}")
        a = self._matrix_of(left, left_on, "the frame")
        b = self._matrix_of(other, right_on, "other")
        if a.shape[1] != b.shape[1]:
            raise ConfigError(f"the vectors differ in length ({a.shape[1]} here, {b.shape[1]} in other): embed both "
                              "with the same model and dimensions")
        li, ri, scores = ops.sim_join(a, b, k=ops.check_k(k), threshold=ops.check_threshold(threshold, True))
        both = set(self._columns(left)) & set(self._columns(other))
        lpart = self._renamed(self._take(left, li), {c: f"{c}{suffixes[0]}" for c in both})
        rpart = self._renamed(self._take(other, ri), {c: f"{c}{suffixes[1]}" for c in both})
        out = self._side_by_side(lpart, rpart)
        return self._with_column(out, _free(score, self._columns(out)), scores)

    def dedup(self, *, on: str = constants.DEFAULT_EMBEDDING_OUTPUT, threshold: float = constants.DEDUP_THRESHOLD,
              keep: str | None = None, group: str = "group") -> Any:
        """Near-duplicate groups: rows whose vectors are at least threshold alike (cosine) share a group id.

        keep=None adds the group column; keep="first" keeps each group's first row only.
        """
        frame = self._vector_frame(on)
        if keep not in (None, "first"):
            raise ConfigError(f"keep must be None (add a group column) or 'first', got {keep!r}")
        groups = ops.dedup(self._matrix_of(frame, on, "the frame"), threshold=ops.check_threshold(threshold, False))
        if keep == "first":
            return self._take(frame, np.sort(np.unique(groups, return_index=True)[1]))
        return self._with_column(frame, _free(group, self._columns(frame)), groups)

    def _matrix_of(self, frame: Any, on: str, name: str) -> np.ndarray:
        """The vector column on of frame as a 2-D float32 array (a view where Arrow allows it), checked."""
        if on not in self._columns(frame):
            raise ConfigError(f"{name} has no vector column {on!r}; its columns are {list(self._columns(frame))}: "
                              f"make one with df.llm.embed(..., output={on!r}), or pass on=")
        try:
            return vector_columns.to_matrix(self._arrow_column(frame, on), name=f"column {on!r}",
                                            labels=self._labels(frame))
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"column {on!r} is not a vector column: {exc}") from None

    def _query_vectors(self, queries: list, size: int, embed_options: dict) -> np.ndarray:
        """The queries as one (queries, size) matrix: texts embedded together (cached), vectors as they are."""
        texts = [q for q in queries if isinstance(q, str)]
        found = iter(())
        if texts:
            embedded = self._many_values(texts).llm.embed(progress=False, errors="raise", **embed_options)
            found = iter(vector_columns.to_matrix(self._arrow_column(embedded, None)))
        vectors = [next(found) if isinstance(q, str) else np.asarray(q, dtype=np.float32).reshape(-1)
                   for q in queries]
        for vector in vectors:
            if len(vector) != size:
                raise ConfigError(f"the query's vector has {len(vector)} numbers, the column's {size}: embed the "
                                  "query with the model and dimensions the column was made with")
        return np.stack(vectors) if vectors else np.zeros((0, size), np.float32)

    # The face's hooks: what a frame is. A Series' vector verbs see it as a one-column frame named on.
    _frame_name = "DataFrame"

    def _vector_frame(self, on: str) -> Any:
        """The frame the operation works on: the frame itself, or a Series as a frame of one column named on."""
        raise NotImplementedError

    def _is_frame(self, other: Any) -> bool:
        raise NotImplementedError

    def _columns(self, frame: Any) -> list:
        raise NotImplementedError

    def _labels(self, frame: Any) -> Any:
        """How errors name a row (pandas' index; None: the row number)."""
        raise NotImplementedError

    def _arrow_column(self, frame: Any, on: str | None) -> Any:
        """Column on of frame (on=None: frame is a Series) as to_matrix takes it (Arrow, or the face's Series)."""
        raise NotImplementedError

    def _take(self, frame: Any, positions: np.ndarray) -> Any:
        """The rows at positions, in that order (pandas keeps their index labels)."""
        raise NotImplementedError

    def _with_column(self, frame: Any, name: str, values: np.ndarray) -> Any:
        """A new frame: frame and one more column."""
        raise NotImplementedError

    def _renamed(self, frame: Any, names: dict) -> Any:
        raise NotImplementedError

    def _side_by_side(self, left: Any, right: Any) -> Any:
        """Two frames of as many rows, their columns side by side, rows numbered afresh."""
        raise NotImplementedError

    def _many_values(self, texts: list[str]) -> Any:
        """A Series of the face's kind holding texts (queries to embed)."""
        raise NotImplementedError


def _many(query: Any) -> bool:
    """True for many queries (a list or tuple of texts or vectors, a 2-D array), False for one."""
    if isinstance(query, np.ndarray):
        return query.ndim == 2
    return isinstance(query, (list, tuple)) and bool(query) and not isinstance(query[0], (int, float, np.number))


def _free(name: str, columns) -> str:
    if name in columns:
        raise ConfigError(f"the frame already has a column {name!r}: pass another name (score= or group=)")
    return name
