"""agg: one answer per group. A group's rows go into one prompt where they fit the context; where they do not,
they are cut, in row order, into chunks that fit, each chunk is answered, and the answers are combined the same
way, level by level, until one remains (a fixed fold: the same rows give the same prompts, so it caches).
Tokens are counted as estimates count them (the provider's counter, else characters / 4)."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import constants
from ..errors import ConfigError, TemplateError
from ..plan.rows import Rows
from .calls import Caller, OperatorEstimate
from .rows import TextRows

REDUCE_HEADER = ("The rows were too many for one request, so these are the answers for consecutive parts of "
                 "them, in order. Combine them into one answer to the same request:")
ROWS_HEADER = "Rows:"
_OVERHEAD_TOKENS = 16  # per request: the roles and separators a chat format adds


@dataclass
class Group:
    """One group's key, its rows' texts, and its answer (or why it has none) as the fold goes."""

    key: tuple
    prompt: str  # the template with the group's key filled in
    items: list[str]  # the rows' texts, then each level's partial answers
    error: str | None = None
    answer: Any = None
    levels: int = 0
    pending: list[str] = field(default_factory=list)  # this level's prompts


def check_by(by: Any, columns: list) -> list:
    """by= as a list of column labels (empty for one group of all rows); ConfigError naming a missing one."""
    keys = [] if by is None else [by] if not isinstance(by, (list, tuple)) else list(by)
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ConfigError(f"by={by!r}: no column(s) {missing}; the columns are {list(columns)}")
    return keys


def parts_of(template: Any, columns: list, keys: list) -> list:
    """The columns a row lists: the template's placeholders that are not group keys (else every other column)."""
    if not isinstance(template, str):
        raise TemplateError("an agg template is a string: the request, with {column} placeholders")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise TemplateError(f"bad agg template {template!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    by_name = {str(c): c for c in columns}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise TemplateError(f"the agg template refers to no column {unknown}; the columns are {list(by_name)}")
    listed = list(dict.fromkeys(by_name[n] for n in names if by_name[n] not in keys))
    return listed or [c for c in columns if c not in keys]


def groups_of(rows: Rows, template: str, keys: list, listed: list) -> list[Group]:
    """The groups, in the order of their first row: each with its prompt and its rows' texts."""
    key_values = list(zip(*(rows.values(k) for k in keys))) if keys else [()] * len(rows)
    cells = [rows.values(c) for c in listed]
    members: dict[tuple, list[int]] = {}
    for i, key in enumerate(key_values):
        members.setdefault(tuple(_missing_as_none(v, rows.nulls) for v in key), []).append(i)
    out = []
    for key, positions in members.items():
        filled = dict(zip(map(str, keys), key))
        prompt = template.format_map(_Names({**filled}))
        texts = [_row_text([(c, cells[j][i]) for j, c in enumerate(listed)]) for i in positions]
        out.append(Group(key, prompt, [t for t in texts if t is not None]))
    return out


def _missing_as_none(value: Any, nulls: tuple) -> Any:
    """A missing key (None, NaN, the library's own nulls) as None: all of a column's missing keys are one group."""
    if value is None or any(value is n for n in nulls) or (isinstance(value, float) and value != value):
        return None
    return value


class _Names(dict):
    """A row's columns are listed under the prompt: in the prompt itself a non-key placeholder reads as its name."""

    def __missing__(self, name: str) -> str:
        return name


def _row_text(cells: list[tuple[Any, Any]]) -> str | None:
    """A row as one line: its value, or "column: value; ..." for several; None when every value is missing."""
    present = [(c, v) for c, v in cells if v is not None and not (isinstance(v, float) and v != v)]
    if not present:
        return None
    if len(cells) == 1:
        return str(present[0][1])
    return "; ".join(f"{c}: {v}" for c, v in present)


class Counter:
    """Tokens as the cost estimate counts them: the provider's token counter for the model, else characters / 4."""

    def __init__(self, caller: Caller):
        found = caller.target.kind.token_counter(caller.target.model)
        self._count = found[0] if found else None

    def __call__(self, text: str) -> int:
        if self._count is None:
            return -(-len(text) // constants.CHARS_PER_TOKEN)
        return int(self._count([{"role": "user", "content": text}]))


def chunks(items: list[str], tokens: list[int], room: int) -> list[list[str]]:
    """Consecutive items cut so that each chunk's tokens fit room (each item fits on its own)."""
    out: list[list[str]] = [[]]
    used = 0
    for item, n in zip(items, tokens):
        if out[-1] and used + n > room:
            out.append([])
            used = 0
        out[-1].append(item)
        used += n
    return out


def numbered(prompt: str, header: str, items: list[str]) -> str:
    """The prompt, then the header and the items one a line, numbered."""
    return "\n".join([prompt, "", header, *(f"{i + 1}. {item}" for i, item in enumerate(items))])


def plan_level(group: Group, count: Counter, context: int, answer_tokens: int, header: str) -> None:
    """The group's prompts for this level (one when everything fits: the last level); or its error."""
    room = context - answer_tokens - _OVERHEAD_TOKENS - count(numbered(group.prompt, header, []))
    tokens = [count(f"{len(group.items)}. {item}") for item in group.items]
    big = next((i for i, n in enumerate(tokens) if n > room), None)
    if big is not None:
        what = "row" if group.levels == 0 else "partial answer"
        group.error = (f"a {what} of this group has about {tokens[big]:,} tokens, more than the "
                       f"{max(room, 0):,} that context_tokens={context:,} leaves it: raise context_tokens= (the "
                       "model's context window), or shorten the rows")
        group.pending = []
        return
    parts = chunks(group.items, tokens, room)
    if group.levels and len(parts) > 1 and len(parts) >= len(group.items):  # nothing combines: it would never end
        group.error = "the partial answers are too long to combine: set max_tokens= lower, or raise context_tokens="
        group.pending = []
        return
    group.pending = [numbered(group.prompt, header, part) for part in parts]


def aggregate(rows: Rows, template: Any, caller: Caller, *, by: Any, output: Any, context_tokens: int
              ) -> tuple[list[Group], Any] | OperatorEstimate:
    """Every group's answer (or error) after the fold, and the last level's output spec; or the dry run's estimate."""
    if isinstance(context_tokens, bool) or not isinstance(context_tokens, int) or context_tokens < 64:
        raise ConfigError(f"context_tokens must be an integer >= 64 (the model's context window), got {context_tokens!r}")
    keys = check_by(by, list(rows.columns))
    groups = groups_of(rows, template, keys, parts_of(template, list(rows.columns), keys))
    count = Counter(caller)
    limit = caller.options.get("max_tokens") or constants.OUTPUT_TOKENS_GUESS
    for g in groups:
        plan_level(g, count, context_tokens, limit, ROWS_HEADER)
    failed = [g for g in groups if g.error]
    if failed and caller.options.get("errors") == "raise":
        raise ConfigError(f"agg: group {failed[0].key!r}: {failed[0].error}")
    first = sum(len(g.pending) for g in groups)
    least = first + sum(len(g.pending) > 1 for g in groups)  # short partial answers: one combining call each
    stand_in = _stand_in(count, limit) if caller.dry_run else None
    level, calls = 0, 0
    spec = caller.plan(TextRows({"prompt": []}), "{prompt}", output).output  # what a run gives, even of no group
    while any(g.pending for g in groups):
        columns, spec = _ask(caller, groups, output, "rows" if level == 0 else f"combine {level}")
        at = 0
        for g in groups:
            if not g.pending:
                continue
            # A dry run folds stand-ins of the longest answer max_tokens allows: the most levels the fold can take.
            answers = [(f"{calls + i} {stand_in}"[:len(stand_in)], None) if columns is None  # distinct: all priced
                       else _answer_at(columns, spec, at + i) for i in range(len(g.pending))]
            at += len(g.pending)
            calls += len(g.pending)
            bad = next((e for a, e in answers if e), None)
            if bad:
                g.error, g.pending = bad, []
            elif len(answers) == 1:
                g.answer, g.pending = answers[0][0], []
            else:
                g.items, g.levels = [a if isinstance(a, str) else json.dumps(a, ensure_ascii=False, default=str)
                                     for a, _ in answers], g.levels + 1
                plan_level(g, count, context_tokens, limit, REDUCE_HEADER)
        level += 1
    if caller.dry_run:
        unsure = sum(bool(g.error) for g in groups) - len(failed)  # the fold of stand-ins failed there
        return _estimate(caller, first, least, calls, level, unsure)
    return groups, spec


def _stand_in(count: Counter, tokens: int) -> str:
    """A text of about `tokens` tokens by the counter: a partial answer as long as max_tokens lets it be."""
    text = "lorem ipsum " * tokens
    return text[: max(1, len(text) * tokens // max(count(text), 1))]


def _estimate(caller: Caller, first: int, least: int, most: int, levels: int, unsure: int) -> OperatorEstimate:
    """The whole fold's estimate: every level priced, from the first level's prompts (the rows) and the combining
    levels' stand-ins; the low end assumes short partial answers (one combining call per group that needs one)."""
    notes = [f"the fold: {levels} level(s) at most, each partial answer taken as long as max_tokens allows (the "
             "high end); shorter answers combine in fewer calls (the low end)"]
    if unsure:
        notes.append(f"{unsure} group(s): partial answers as long as max_tokens allows would not fit context_tokens "
                     "to combine, so those groups fail unless their answers are shorter: set max_tokens= lower or "
                     "raise context_tokens=; their combining calls are not counted in the high end")
    made = caller.estimate((min(least, most), max(least, most)), first, notes)
    rows = [e for name, e in caller.estimates if name == "rows"]
    combine = [e for name, e in caller.estimates if name != "rows"]
    if made.cost is not None and rows and combine:
        per_call = combine[0].cost[0] / max(combine[0].rows, 1)
        made.cost = (rows[0].cost[0] + per_call * (least - first), made.cost[1])
    return made


def _ask(caller: Caller, groups: list[Group], output: Any, stage: str) -> tuple[dict | None, Any]:
    """One run of every group's prompts of this level."""
    prompts = [p for g in groups for p in g.pending]
    plan = caller.plan(TextRows({"prompt": prompts}), "{prompt}", output, online=stage != "rows")
    return caller.run(stage, plan), plan.output


def _answer_at(columns: dict, spec: Any, i: int) -> tuple[Any, str | None]:
    """The answer of the level's i-th prompt (text, or a dict of the schema's fields) and its error."""
    error = columns[spec.error_column][i].as_py() if spec.error_column else None
    if spec.schema is None:
        value = columns[spec.text][i].as_py()
    else:
        value = {f: _cell(columns[f], i) for f in spec.schema.fields}
    if error is None and value is None:
        error = "no answer"
    return value, error


def _cell(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, np.ndarray) else values[i].as_py()
