"""The semantic operators' verbs (filter, classify, join, top_k, rank, agg), shared by pandas and Polars: validate,
hand the rows to llmframe.ops, and build the face's frame from what comes back (the face's _op_* hooks).

Every verb takes generate's options (**options: max_cost=, mode="batch", progress=, cache=, ...) and dry_run=True,
which sends nothing and returns an OperatorEstimate of the calls and their cost.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import numpy as np

from .. import constants
from ..collect import vectors as vector_columns
from ..collect.report import Report, record
from ..errors import ConfigError
from ..plan.rows import Rows
from .lazy import module

# Imported on a verb's first use: a plain generate call does not pay for the operators (README "Cold start").
aggregate, ranking, semantic, calls = (module(f"llmframe.ops.{name}") for name in
                                       ("aggregate", "ranking", "semantic", "calls"))


class OperatorVerbs:
    """filter, classify, top_k and rank over a face's rows (a frame's or a Series' values), and their async twins;
    the face says how to build its results."""

    _obj: Any

    def filter(self, template: Any, *, model: Any, mask: bool = False, explain: bool = False,
               reason: str = "reason", dry_run: bool = False, **options: Any) -> Any:
        """The rows for which the model answers true to the template's question (a strict boolean answer).

        mask=True: the boolean column instead (missing where a row failed). explain=True: a column `reason` with
        the model's one-sentence reason. options: generate's. dry_run=True: an estimate; nothing is sent.
        """
        caller = calls.Caller("filter", model, options, dry_run=dry_run, reading=self._op_reading())
        if explain and not mask:
            self._op_free(reason, "reason=")
        got = semantic.filter_rows(self._op_rows(self._obj), template, caller, explain=bool(explain))
        if got is None:
            return caller.estimate((len(self._op_rows(self._obj)),) * 2, len(self._op_rows(self._obj)))
        answer, reasons = got
        keep = answer.fill_null(False).to_numpy(zero_copy_only=False)
        report = caller.report(kept=int(keep.sum()))
        if mask:
            columns = {"keep": answer, **({reason: reasons} if explain else {})}
            return self._op_done(self._op_columns(columns), report)
        out = self._op_take(self._obj, np.flatnonzero(keep))
        if explain:
            out = self._op_assign(out, {reason: reasons.filter(keep)})
        return self._op_done(out, report)

    def classify(self, template: Any, *, labels: Any, model: Any, multi: bool = False, output: str = "label",
                 dry_run: bool = False, **options: Any) -> Any:
        """A category column (every label a category; Polars Enum) of the one label the model picks per row; with
        multi=True a list column of every label that applies. labels: a list, an Enum class, or a dict label ->
        description. A label outside the set cannot come back (a strict enum schema)."""
        chosen = semantic.labels_of(labels)
        self._op_free(output, "output=")
        caller = calls.Caller("classify", model, options, dry_run=dry_run, reading=self._op_reading())
        got = semantic.classify_rows(self._op_rows(self._obj), template, caller, labels=chosen, multi=bool(multi))
        if got is None:
            return caller.estimate((len(self._op_rows(self._obj)),) * 2, len(self._op_rows(self._obj)))
        column = self._op_labels(output, got, list(chosen)) if multi else got
        return self._op_done(self._op_added({output: column}), caller.report())

    def top_k(self, template: Any, *, model: Any, k: int = 10, margin: float = constants.TOP_K_MARGIN,
              score: str = "score", dry_run: bool = False, **options: Any) -> Any:
        """The k rows that best meet the template's criterion, best first, with their pointwise score: every row is
        scored (0-100), then the boundary is refined pairwise: the rows scored within margin= points of the k-th
        best score are compared two at a time, and the best of them fill the places the rows scored clearly above
        it leave (about n + b + k log b calls for b such rows). The report's "refined" says what it compared."""
        self._op_free(score, "score=")
        caller = calls.Caller("top_k", model, options, dry_run=dry_run, reading=self._op_reading())
        got = ranking.top_k(self._op_rows(self._obj), template, caller, k, margin)
        if not isinstance(got, tuple):
            return got
        n = len(self._op_rows(self._obj))
        *ranked, refined = got
        return self._ranked(tuple(ranked), score, caller.report(naive_calls=n * (n - 1) // 2, refined=refined))

    def rank(self, template: Any, *, model: Any, score: str = "score", dry_run: bool = False, **options: Any) -> Any:
        """Every row, ordered by the model's pointwise score for the template's criterion (best first, ties in row
        order, failed rows last), with the score column."""
        self._op_free(score, "score=")
        caller = calls.Caller("rank", model, options, dry_run=dry_run, reading=self._op_reading())
        got = ranking.rank(self._op_rows(self._obj), template, caller)
        return got if not isinstance(got, tuple) else self._ranked(got, score, caller.report())

    async def afilter(self, template: Any, **arguments: Any) -> Any:
        """The async twin of filter (its arguments), for code that already runs an event loop."""
        return await _in_thread(self.filter, template, arguments)

    async def aclassify(self, template: Any, **arguments: Any) -> Any:
        """The async twin of classify (its arguments)."""
        return await _in_thread(self.classify, template, arguments)

    async def atop_k(self, template: Any, **arguments: Any) -> Any:
        """The async twin of top_k (its arguments)."""
        return await _in_thread(self.top_k, template, arguments)

    async def arank(self, template: Any, **arguments: Any) -> Any:
        """The async twin of rank (its arguments)."""
        return await _in_thread(self.rank, template, arguments)

    def _ranked(self, got: tuple, score: str, report: dict) -> Any:
        positions, values = got
        out = self._op_assign(self._op_take(self._obj, positions), {score: values})
        return self._op_done(out, report)

    def _op_free(self, name: str, option: str) -> None:
        if name in self._op_rows(self._obj).columns:
            raise ConfigError(f"the frame already has a column {name!r}: pass another {option}")

    @staticmethod
    def _op_unused(name: str, frame_columns: Any) -> str:
        if name in list(frame_columns.columns):
            raise ConfigError(f"the joined frame already has a column {name!r}: pass another similarity=")
        return name

    @staticmethod
    def _op_report(report: dict) -> Report:
        return record(Report(report))

    # The face's part: its rows, and how it builds its frames from positions and Arrow (or Python) columns.
    def _op_rows(self, frame: Any) -> Rows:
        raise NotImplementedError

    def _op_reading(self) -> dict:
        """plan()'s keywords that say how to read the face's rows (a Series': "{}" is its value)."""
        return {}

    def _op_added(self, columns: dict) -> Any:
        """classify's result: the frame with the new columns (a Series' face: the columns alone)."""
        return self._op_assign(self._obj, columns)

    def _op_take(self, frame: Any, positions: np.ndarray) -> Any:
        raise NotImplementedError

    def _op_assign(self, frame: Any, columns: dict) -> Any:
        raise NotImplementedError

    def _op_columns(self, columns: dict) -> Any:
        """The columns alone, aligned to the frame's rows: a Series for one, else a frame."""
        raise NotImplementedError

    def _op_labels(self, name: str, values: list, labels: list) -> Any:
        """multi=True's list column, of the labels' own type."""
        raise NotImplementedError

    def _op_pairs(self, left: Any, right: Any, suffixes: tuple[str, str]) -> Any:
        raise NotImplementedError

    def _op_matrix(self, frame: Any, column: str, name: str) -> np.ndarray:
        """A vector column (embed's) as a 2-D float32 array; ConfigError naming the frame for a missing one."""
        if column not in list(self._op_rows(frame).columns):
            raise ConfigError(f"{name} has no vector column {column!r}: make one with embed(..., output={column!r}), "
                              "or leave on= out to embed here")
        return vector_columns.to_matrix(self._op_arrow(frame, column), name=f"column {column!r}")

    def _op_arrow(self, frame: Any, column: str) -> Any:
        """A column as Arrow (or what collect.vectors.to_matrix reads)."""
        raise NotImplementedError

    def _op_table(self, columns: dict, like: Any, keys: list) -> Any:
        """A new frame of these columns (agg's), the key columns in the frame's dtypes."""
        raise NotImplementedError

    def _op_done(self, out: Any, report: dict) -> Any:
        """The result with its report (out.llm.report, llmframe.last_report())."""
        raise NotImplementedError


class FrameOperatorVerbs(OperatorVerbs):
    """The verbs over a frame's rows alone: join (two frames) and agg (groups of rows), with their async twins."""

    def join(self, other: Any, template: Any, *, model: Any, candidates: int | None = constants.JOIN_CANDIDATES,
             embed_model: Any = constants.DEFAULT_EMBEDDING_MODEL, embed_options: dict | None = None,
             on: str | tuple[str, str] | None = None, similarity: str = "similarity",
             suffixes: tuple[str, str] = ("_left", "_right"), dry_run: bool = False, **options: Any) -> Any:
        """The pairs (a row of this frame, a row of other) for which the model answers true to the template, which
        names the sides: "Is {left.title} the same product as {right.name}?".

        candidates=k: each row's k most alike rows of other by embeddings (embed_model=, embed_options=), so
        n*k calls; candidates=None: every pair (refused above constants.JOIN_ALL_PAIRS_LIMIT pairs unless
        max_cost= is set or its dry_run=True was seen). on=: the frames' own vector columns (embed's), the same
        name or (this frame's, other's), instead of embedding here. The result has both rows' columns (suffixes
        where they share a name) and their cosine similarity.
        """
        if type(other) is not type(self._obj):
            raise ConfigError(f"other must be a {type(self._obj).__name__} like this frame, got {type(other).__name__}")
        caller = calls.Caller("join", model, options, dry_run=dry_run)
        vectors = None
        if on is not None:
            left_on, right_on = (on, on) if isinstance(on, str) else on
            vectors = self._op_matrix(self._obj, left_on, "this frame"), self._op_matrix(other, right_on, "other")
        got = semantic.join_rows(self._op_rows(self._obj), self._op_rows(other), template, caller,
                                 candidates=candidates, embed_model=embed_model, embed_options=dict(embed_options or {}),
                                 vectors=vectors)
        if not isinstance(got, tuple):
            return got
        li, ri, scores = got
        pairs = self._op_pairs(self._op_take(self._obj, li), self._op_take(other, ri), suffixes)
        naive = len(self._op_rows(self._obj)) * len(self._op_rows(other))
        out = self._op_assign(pairs, {self._op_unused(similarity, pairs): scores})
        return self._op_done(out, caller.report(pairs=len(li), naive_calls=naive))

    def agg(self, template: Any, *, model: Any, by: Any = None, output: Any = constants.DEFAULT_OUTPUT,
            context_tokens: int = constants.AGG_CONTEXT_TOKENS, dry_run: bool = False, **options: Any) -> Any:
        """One answer per group of rows (by= a column or columns; None: all rows), e.g. "Summarise the {complaint}s
        about {product}" by="product": the group's key fills its placeholders, the other placeholders name the
        columns listed under the prompt, row by row. A group too long for context_tokens is answered in parts
        that are then combined (a fixed fold, so it caches). output=: a column name or a schema, as generate's."""
        caller = calls.Caller("agg", model, options, dry_run=dry_run)
        got = aggregate.aggregate(self._op_rows(self._obj), template, caller, by=by, output=output,
                                  context_tokens=context_tokens)
        if not isinstance(got, tuple):
            return got
        groups, spec = got
        keys = aggregate.check_by(by, list(self._op_rows(self._obj).columns))
        clash = [n for n in spec.names if n in keys]
        if clash:
            raise ConfigError(f"the answer column(s) {clash} are group keys too: pass another output=")
        columns: dict[str, Any] = {k: [g.key[i] for g in groups] for i, k in enumerate(keys)}
        if spec.schema is None:
            columns[spec.text] = [g.answer for g in groups]
        else:
            columns.update({f: [None if g.answer is None else g.answer.get(f) for g in groups]
                            for f in spec.schema.fields})
        if spec.error_column:
            columns[spec.error_column] = [g.error for g in groups]
        levels = max((g.levels for g in groups), default=0)
        report = caller.report(groups=len(groups), levels=levels + 1, failed_groups=sum(bool(g.error) for g in groups))
        return self._op_done(self._op_table(columns, self._obj, keys), report)

    async def ajoin(self, other: Any, template: Any, **arguments: Any) -> Any:
        """The async twin of join (its arguments)."""
        return await _in_thread(functools.partial(self.join, other), template, arguments)

    async def aagg(self, template: Any, **arguments: Any) -> Any:
        """The async twin of agg (its arguments)."""
        return await _in_thread(self.agg, template, arguments)


async def _in_thread(verb: Any, template: Any, arguments: dict) -> Any:
    """A verb run on a worker thread: its stages run on llmframe's engine loop as ever (one after another, each
    waiting on the one before), and the caller's event loop goes on meanwhile."""
    return await asyncio.to_thread(verb, template, **arguments)
