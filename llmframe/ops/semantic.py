"""filter, classify and join as plans of generate calls: each call's prompt is the user's template, the
operator's instructions its system message and a strict schema its output, so the same call made through
generate (template, system=, output=: see call_of) has the same cache key. Face-neutral: rows in, Arrow out."""

from __future__ import annotations

import enum
import functools
import numbers
import string
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from .. import constants
from ..errors import ConfigError, TemplateError
from ..plan.rows import Rows
from . import vectors as vector_ops
from .calls import Caller, OperatorEstimate
from .rows import PickedRows

FILTER_SYSTEM = "Answer the question about the given input with true or false."
EXPLAIN_SYSTEM = " First give your reason in one sentence, then the answer."
JOIN_SYSTEM = "The question is about a pair of records, one from each of two tables. Answer it with true or false."
CLASSIFY_SYSTEM = "Classify the given input: answer with exactly one of these labels."
CLASSIFY_MULTI_SYSTEM = "Classify the given input: answer with every one of these labels that applies (none if none does)."


@functools.lru_cache(maxsize=2)
def verdict_schema(explain: bool) -> type:
    """filter's and join's output: a strict boolean (after a one-sentence reason, with explain=True). A pydantic
    model, made once: it validates several times faster than a JSON Schema validator, which cached re-runs feel."""
    from pydantic import Field, create_model

    fields: dict = {"answer": (bool, ...)}
    if explain:
        fields = {"reason": (str, Field(description="one sentence")), **fields}
    return create_model("verdict", **fields)


def labels_of(labels: Any) -> dict[str, str | None]:
    """labels= as label -> description (None without one): a list, an Enum class or a dict; ConfigError if bad."""
    if isinstance(labels, type) and issubclass(labels, enum.Enum):
        labels = [m.value for m in labels]
    if isinstance(labels, dict):
        pairs = list(labels.items())
    elif isinstance(labels, (list, tuple)):
        pairs = [(label, None) for label in labels]
    else:
        raise ConfigError(f"labels must be a list of strings, an Enum class or a dict label -> description, "
                          f"got {type(labels).__name__}")
    if not pairs:
        raise ConfigError("labels is empty: give at least one label")
    bad = [label for label, _ in pairs if not isinstance(label, str) or not label.strip()]
    if bad:
        raise ConfigError(f"labels must be non-empty strings, got {bad[:3]}")
    names = [label for label, _ in pairs]
    repeated = sorted({label for label in names if names.count(label) > 1})
    if repeated:
        raise ConfigError(f"labels {repeated} are given more than once: each label once")
    if any(d is not None and not isinstance(d, str) for _, d in pairs):
        raise ConfigError("a label's description must be a string")
    return dict(pairs)


@functools.lru_cache(maxsize=64)
def classify_schema(labels: tuple[str, ...], multi: bool) -> type:
    """classify's output: one label of the set (a strict enum), or a list of them with multi=True."""
    from pydantic import create_model

    one = Literal[labels]  # type: ignore[valid-type]
    return create_model("classification", **({"labels": (list[one], ...)} if multi else {"label": (one, ...)}))


def classify_system(labels: dict[str, str | None], multi: bool) -> str:
    """The instructions: the labels, each with its description."""
    lines = [f"- {label}: {d}" if d else f"- {label}" for label, d in labels.items()]
    return "\n".join([CLASSIFY_MULTI_SYSTEM if multi else CLASSIFY_SYSTEM, *lines])


def call_of(operator: str, *, explain: bool = False, labels: Any = None, multi: bool = False) -> dict:
    """The system= and output= with which generate makes exactly an operator's call (and so its cache key)."""
    if operator == "filter":
        return {"system": FILTER_SYSTEM + (EXPLAIN_SYSTEM if explain else ""), "output": verdict_schema(explain)}
    if operator == "classify":
        chosen = labels_of(labels)
        return {"system": classify_system(chosen, multi), "output": classify_schema(tuple(chosen), multi)}
    if operator == "join":
        return {"system": JOIN_SYSTEM, "output": verdict_schema(False)}
    raise ConfigError(f"no operator {operator!r}: filter, classify or join")


def filter_rows(rows: Rows, template: Any, caller: Caller, *, explain: bool) -> tuple[pa.Array, pa.Array | None] | None:
    """Each row's verdict (null where it failed) and, with explain=True, its reason; None on a dry run."""
    call = call_of("filter", explain=explain)
    plan = caller.plan(rows, template, call["output"], system=call["system"], memo=True, own=True)
    columns = caller.run("filter", plan)
    if columns is None:
        return None
    return _whole(columns["answer"]), _whole(columns["reason"]) if explain else None


def classify_rows(rows: Rows, template: Any, caller: Caller, *, labels: Any, multi: bool) -> Any:
    """Each row's label (a dictionary array of every label) or, with multi=True, its list of labels (objects)."""
    call = call_of("classify", labels=labels, multi=multi)
    plan = caller.plan(rows, template, call["output"], system=call["system"], memo=True, own=True)
    columns = caller.run("classify", plan)
    if columns is None:
        return None
    if not multi:
        return _whole(columns["label"])
    order = {label: i for i, label in enumerate(labels_of(labels))}
    return [None if v is None else sorted(set(v), key=order.__getitem__) for v in columns["labels"].tolist()]


def _whole(values: Any) -> Any:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


# --- join ---------------------------------------------------------------------------------------------------

_SIDES = ("left", "right")
_SEEN: set[tuple] = set()  # all-pairs joins whose dry run was seen in this process: they may run


def pair_template(template: Any, left: list, right: list) -> tuple[str, dict[str, tuple[int, Any]]]:
    """The template with {left.x} / {right.y} as plain placeholders, and each one's (side, column);
    TemplateError naming the side for a column it lacks."""
    if not isinstance(template, str):
        raise TemplateError("a join template is a string with {left.column} and {right.column} placeholders")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"bad join template {template!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    out, picks, names = [], {}, {}
    for literal, name, spec, conversion in parts:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            continue
        side, _, column = name.partition(".")
        if side not in _SIDES or not column:
            raise TemplateError(f"the join template's {{{name}}} names no side: write {{left.{name}}} for the left "
                                f"frame's column or {{right.{name}}} for the other frame's")
        columns = left if side == "left" else right
        found = next((c for c in columns if str(c) == column), None)
        if found is None:
            raise TemplateError(f"the join template's {{{name}}}: the {side} frame has no column {column!r}; its "
                                f"columns are {[str(c) for c in columns]}")
        key = (side, found)
        if key not in names:
            names[key] = f"{side[0]}{len(names)}"
            picks[names[key]] = (_SIDES.index(side), found)
        out.append("{" + names[key] + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
    if not any(s == 0 for s, _ in picks.values()) or not any(s == 1 for s, _ in picks.values()):
        raise TemplateError("a join template refers to both frames: {left.column} and {right.column}")
    return "".join(out), picks


def check_candidates(candidates: Any) -> int | None:
    """candidates= as an int >= 1, or None (every pair)."""
    if candidates is None:
        return None
    if isinstance(candidates, bool) or not isinstance(candidates, numbers.Integral) or candidates < 1:
        raise ConfigError(f"candidates must be an integer >= 1 (right rows per left row) or None (every pair), "
                          f"got {candidates!r}")
    return int(candidates)


def join_rows(left: Rows, right: Rows, template: Any, caller: Caller, *, candidates: int | None,
              embed_model: Any, embed_options: dict, vectors: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | OperatorEstimate:
    """The accepted pairs (left positions, right positions, cosine similarity or NaN), or the dry run's estimate.

    candidates=k: each left row's k most alike right rows by embeddings (ops.vectors.sim_join), n*k calls; the
    sides' vectors are embedded here, or given (vectors: the frames' own vector columns as matrices);
    None: every pair, refused above constants.JOIN_ALL_PAIRS_LIMIT unless max_cost= is set or its dry run was seen.
    """
    text, picks = pair_template(template, left.columns, right.columns)
    candidates = check_candidates(candidates)
    n, m = len(left), len(right)
    naive = n * m
    seen = (text, n, m, caller.target.name, tuple(sorted(map(str, picks.values()))))
    if candidates is None and naive > constants.JOIN_ALL_PAIRS_LIMIT and not caller.dry_run and seen not in _SEEN \
            and caller.options.get("max_cost") is None:
        raise ConfigError(f"candidates=None asks every pair: {naive:,} calls, over {constants.JOIN_ALL_PAIRS_LIMIT:,}."
                          " Look at the cost first with dry_run=True (then this call runs), set max_cost=, or pick "
                          f"candidates by embeddings with candidates={constants.JOIN_CANDIDATES}")
    if candidates is None:
        li, ri = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
        scores = np.full(len(li), np.nan, dtype=np.float32)
    else:
        per = min(candidates, m)
        if vectors is not None:
            a, b = vectors
            if a.shape[1] != b.shape[1]:
                raise ConfigError(f"the vectors differ in length ({a.shape[1]} left, {b.shape[1]} right): embed "
                                  "both sides with the same model and dimensions")
        else:
            a = caller.vectors("embed left", left, _side_text(picks, 0), embed_model, embed_options)
            b = caller.vectors("embed right", right, _side_text(picks, 1), embed_model, embed_options)
        if caller.dry_run:  # the candidates are not known before the vectors: any per right rows stand in
            li, ri = np.repeat(np.arange(n), per), np.tile(np.arange(per), n)
            scores = np.zeros(len(li), dtype=np.float32)
        else:
            li, ri, scores = vector_ops.sim_join(a, b, k=per, threshold=None)
    pairs = PickedRows({name: ((left, right)[side], column, (li, ri)[side]) for name, (side, column) in picks.items()})
    call = call_of("join")
    columns = caller.run("check pairs", caller.plan(pairs, text, call["output"], system=call["system"]))
    if columns is None:
        _SEEN.add(seen)
        notes = [] if candidates is None else ["the candidate pairs are known once both sides are embedded: "
                                               "their prompts here are stand-ins of the same count"]
        return caller.estimate((len(li), len(li)), naive, notes)
    accepted = _whole(columns["answer"]).fill_null(False).to_numpy(zero_copy_only=False)
    return li[accepted], ri[accepted], scores[accepted]


def _side_text(picks: dict[str, tuple[int, Any]], side: int) -> str:
    """What a side's rows are embedded from: the columns the template reads of it, one a line."""
    return "\n".join("{" + str(column) + "}" for s, column in picks.values() if s == side)
