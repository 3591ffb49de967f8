"""Built-in scorers for sweeps: exact, contains, numeric, regex, and an LLM judge.

A scorer is called with the sweep's long table and the answer column's name, and returns one float
per row (1.0 right, 0.0 wrong, anything between for partial credit); rows without an answer are not
passed to it and score NaN.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from typing import Any

import pandas as pd

from .errors import ConfigError

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRUE = frozenset({"yes", "true", "correct", "right", "pass", "y"})
_FALSE = frozenset({"no", "false", "incorrect", "wrong", "fail", "n"})


def normalize(text: Any) -> str:
    """Unicode NFKC, case-folded, whitespace collapsed, surrounding punctuation and quotes removed."""
    value = unicodedata.normalize("NFKC", str(text)).casefold()
    return " ".join(value.split()).strip(string.punctuation + " \u201c\u201d\u2018\u2019")


def first_number(text: Any) -> float | None:
    """The first number in a text ("about 1,234.5 km" -> 1234.5), or None."""
    match = _NUMBER.search(str(text))
    if match is None:
        return None
    try:
        return float(match.group().replace(",", ""))
    except ValueError:
        return None


class Scorer:
    """Base of the built-in scorers: score(table, answer) -> one float per row."""

    name = "score"

    columns: tuple = ()  # the reference columns it reads, in the order one() takes them

    def __call__(self, table: pd.DataFrame, answer: str) -> pd.Series:
        values = zip(table[answer], *(table[c] for c in self.columns))
        return pd.Series([float(self.one(a, *refs)) for a, *refs in values], index=table.index, dtype="float64")

    def one(self, answer: Any, *references: Any) -> float:
        raise NotImplementedError

    def check_columns(self, columns) -> None:
        """ConfigError before anything is sent if a reference column is missing."""
        missing = [c for c in getattr(self, "columns", ()) if c not in columns]
        if missing:
            raise ConfigError(f"{type(self).__name__} scorer: the frame has no column(s) {missing}; "
                              f"its columns are {list(columns)}")


class exact(Scorer):  # noqa: N801 - used like a function: score=exact("gold")
    """1.0 when the answer equals the reference column after normalize() (case, spaces, punctuation)."""

    def __init__(self, reference: str):
        self.columns = (reference,)
        self.name = f"exact({reference})"

    def one(self, answer, reference):
        return normalize(answer) == normalize(reference)


class contains(Scorer):  # noqa: N801
    """1.0 when the normalised reference appears in the normalised answer."""

    def __init__(self, reference: str):
        self.columns = (reference,)
        self.name = f"contains({reference})"

    def one(self, answer, reference):
        return normalize(reference) in normalize(answer)


class numeric(Scorer):  # noqa: N801
    """1.0 when the first number in the answer is within tol (absolute) or rel_tol (relative) of the reference."""

    def __init__(self, reference: str, *, tol: float = 0.0, rel_tol: float = 0.0):
        if not (tol >= 0 and rel_tol >= 0):
            raise ConfigError("numeric scorer: tol and rel_tol must be >= 0")
        self.columns = (reference,)
        self.tol, self.rel_tol = tol, rel_tol
        self.name = f"numeric({reference})"

    def one(self, answer, reference):
        got, want = first_number(answer), first_number(reference)
        if got is None or want is None:
            return 0.0
        return math.isclose(got, want, rel_tol=self.rel_tol, abs_tol=self.tol)


class regex(Scorer):  # noqa: N801
    """1.0 when the pattern is found in the answer (case-insensitive unless flags= say otherwise)."""

    def __init__(self, pattern: str, *, flags: int = re.IGNORECASE):
        try:
            self._compiled = re.compile(pattern, flags)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"regex scorer: invalid pattern {pattern!r}: {exc}") from None
        self.name = f"regex({pattern})"

    def one(self, answer):
        return self._compiled.search(str(answer)) is not None


class judge(Scorer):  # noqa: N801
    """An LLM grades each answer: template sees the table's columns (the answer included), model grades.

    The judge's reply scores as its first number (clipped to 0..1, or divided by scale=), else yes/true/correct
    as 1.0 and no/false/incorrect as 0.0, else NaN. Its answers are cached like any other; options are generate's.
    """

    def __init__(self, template: str, *, model: str, scale: float = 1.0, **options: Any):
        self.template, self.model, self.scale, self.options = template, model, scale, options
        self.columns = ()
        self.name = f"judge({model})"
        self.report: dict | None = None  # the judge run's report, after scoring

    def __call__(self, table: pd.DataFrame, answer: str) -> pd.Series:
        options = {"progress": False, "max_tokens": 16, **self.options}
        out = table.reset_index(drop=True).llm.generate(self.template, model=self.model, output="__judge",
                                                        usage=True, **options)
        self.report = out.attrs.get("llmframe")
        scores = out["__judge"].map(self.parse, na_action="ignore").astype("float64")
        scores.index = table.index
        return scores

    def parse(self, reply: str) -> float:
        """A judge's reply as a score in 0..1 (NaN when it says nothing usable)."""
        number = first_number(reply)
        if number is not None:
            return min(1.0, max(0.0, number / self.scale))
        words = set(re.findall(r"[a-z]+", reply.casefold()))
        if words & _TRUE and not words & _FALSE:
            return 1.0
        if words & _FALSE:
            return 0.0
        return math.nan


class _Function(Scorer):
    """A user's function row -> bool or number, applied to each answered row."""

    def __init__(self, function):
        self.function = function
        self.columns = ()
        self.name = getattr(function, "__name__", "score")

    def __call__(self, table: pd.DataFrame, answer: str) -> pd.Series:
        # Each row a Series: row.answer and row["a column"] both work.
        return pd.Series([float(self.function(row)) for _, row in table.iterrows()], index=table.index,
                         dtype="float64")


def as_scorer(score: Any) -> Scorer | None:
    """A Scorer from score= (a Scorer, a function, or None); ConfigError otherwise."""
    if score is None or isinstance(score, Scorer):
        return score
    if callable(score):
        return _Function(score)
    raise ConfigError(f"score must be a function row -> number, or a scorer from llmframe.scorers, got {score!r}")
