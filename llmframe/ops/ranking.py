"""top_k and rank as plans of generate calls: a pointwise score for every row (independent calls: batchable), then
pairwise refinement of the boundary: the rows whose scores are within `margin` of the k-th best score (ties and
near-ties at the cut, where a pointwise score is least to be trusted) are compared pairwise (a knockout tournament,
then replays among the rows beaten only by rows already chosen), the rows scored clearly above it are in by their
scores (ties among them ordered pairwise too). top_k of k over n rows costs about n + b + k log b calls for a
boundary of b rows, not n^2 / 2.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from .. import constants
from ..errors import ConfigError
from ..plan.rows import Rows
from .calls import Caller, OperatorEstimate, user_texts
from .rows import TextRows

RATE_SYSTEM = ("Rate how well the given input meets the criterion it states, as an integer from "
               f"{constants.SCORE_SCALE[0]} (not at all) to {constants.SCORE_SCALE[1]} (perfectly).")
COMPARE_SYSTEM = ('Two inputs follow, each stating the same criterion. Answer "A" if item A meets it better, '
                  '"B" if item B does.')
COMPARE_TEMPLATE = "Item A:\n{a}\n\nItem B:\n{b}"


@functools.lru_cache(maxsize=1)
def score_schema() -> type:
    """The pointwise score: an integer on constants.SCORE_SCALE (a pydantic model: fast to validate)."""
    from pydantic import Field, create_model

    low, high = constants.SCORE_SCALE
    return create_model("rating", score=(int, Field(description=f"{low} to {high}")))


@functools.lru_cache(maxsize=1)
def compare_schema() -> type:
    """A comparison's answer: "A" or "B"."""
    from pydantic import create_model

    return create_model("comparison", better=(Literal["A", "B"], ...))


Compare = Callable[[list[tuple[int, int]]], list[int]]  # pairs -> the winner of each


def check_k(k: Any, rows: int) -> int:
    """k as an int in 1..rows; ConfigError otherwise (a k larger than the frame names both)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    if k > rows:
        raise ConfigError(f"k={k} is larger than the frame ({rows} rows): ask for at most {rows}, or use rank()")
    return int(k)


def scores(rows: Rows, template: Any, caller: Caller, memo: bool = False) -> tuple[np.ndarray, Any] | None:
    """Each row's pointwise score (NaN where it failed) and the plan that asked (its prompts: all of them unless
    memo, the run memo's, answered some); None on a dry run."""
    plan = caller.plan(rows, template, score_schema(), system=RATE_SYSTEM, own=True, memo=memo)
    columns = caller.run("score", plan)
    if columns is None:
        return None
    values = columns["score"]
    got = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.clip(got, *constants.SCORE_SCALE), plan


def best_of(items: list[int], m: int, compare: Compare) -> list[int]:
    """The m best of items, best first: a knockout finds the best; the next best lost only to rows already
    chosen, so each next round is a knockout among those alone (a few calls), never among all."""
    lost_to: dict[int, list[int]] = {i: [] for i in items}

    def knockout(players: list[int]) -> int:
        while len(players) > 1:
            pairs = [(players[i], players[i + 1]) for i in range(0, len(players) - 1, 2)]
            winners = compare(pairs)
            for (a, b), w in zip(pairs, winners):
                lost_to[b if w == a else a].append(w)
            players = winners + ([players[-1]] if len(players) % 2 else [])
        return players[0]

    chosen: list[int] = []
    done: set[int] = set()
    players = list(items)
    while len(chosen) < min(m, len(items)):
        winner = knockout(players)
        chosen.append(winner)
        done.add(winner)
        players = [i for i in items if i not in done and all(w in done for w in lost_to[i])]
        if not players:  # answers that contradict each other (a beat b beat c beat a): any left row may be next
            players = [i for i in items if i not in done]
    return chosen


def check_margin(margin: Any) -> float:
    """margin= as a number >= 0 (points of constants.SCORE_SCALE)."""
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not margin >= 0:
        raise ConfigError(f"margin must be a number >= 0 (points of the {constants.SCORE_SCALE[0]}-"
                          f"{constants.SCORE_SCALE[1]} score scale), got {margin!r}")
    return float(margin)


def top_k(rows: Rows, template: Any, caller: Caller, k: int, margin: float = constants.TOP_K_MARGIN
          ) -> tuple[np.ndarray, np.ndarray, dict] | OperatorEstimate:
    """The positions of the k best rows, best first, their scores and what the refinement did; or the estimate."""
    n = len(rows)
    k = check_k(k, n)
    margin = check_margin(margin)
    got = scores(rows, template, caller)
    if got is None:
        most = n + (n - 1) + k * (math.ceil(math.log2(max(n, 2))) + k) + k * math.ceil(math.log2(k + 1))
        return caller.estimate((n, most), n * (n - 1) // 2,
                               ["the pairwise calls depend on how close the scores are at the cut: at most the high "
                                "end"])
    values, plan = got
    comparer = _Comparer(caller, plan)
    filled = np.where(np.isnan(values), -1.0, values)  # a row without a score ranks last
    cut = float(np.sort(filled)[::-1][k - 1])
    sure = np.flatnonzero(filled > cut + margin)  # fewer than k: in by their scores alone
    boundary = np.flatnonzero(np.abs(filled - cut) <= margin).tolist()
    want = k - len(sure)
    chosen = sure[np.argsort(-filled[sure], kind="stable")].tolist()
    chosen += boundary if len(boundary) == 1 else best_of(boundary, want, comparer)
    picked = np.asarray(in_order(chosen[:k], filled, margin, comparer), dtype=np.int64)
    refined = {"cut_score": None if cut < 0 else cut, "margin": margin, "boundary_rows": len(boundary),
               "in_by_score": len(sure), "pairwise_calls": len(comparer.known)}
    return picked, values[picked], refined


def in_order(chosen: list[int], filled: np.ndarray, margin: float, compare: Compare) -> list[int]:
    """The chosen rows best first: rows whose scores differ by more than margin by their scores, closer ones
    (ties included) by a comparison (known pairs are not asked again; a near-sorted list takes few)."""
    def worse(a: int, b: int) -> int:  # a sort key: -1 when a goes first
        if abs(filled[a] - filled[b]) > margin:
            return -1 if filled[a] > filled[b] else 1
        return -1 if compare([(a, b)])[0] == a else 1

    return sorted(chosen, key=functools.cmp_to_key(worse))


def rank(rows: Rows, template: Any, caller: Caller) -> tuple[np.ndarray, np.ndarray] | OperatorEstimate:
    """Every row's position, best score first (ties in row order, failed rows last), and the scores."""
    got = scores(rows, template, caller, memo=True)  # the order needs no prompt afterwards
    if got is None:
        return caller.estimate((len(rows), len(rows)), len(rows))
    values = got[0]
    order = np.argsort(-np.where(np.isnan(values), -np.inf, values), kind="stable")
    return order, values[order]


class _Comparer:
    """Asks which of two rows is better, a round of pairs in one run; never the same pair twice."""

    def __init__(self, caller: Caller, plan: Any):
        self.caller, self.plan = caller, plan
        self.known: dict[tuple[int, int], int] = {}
        self.texts: dict[int, str] = {}

    def __call__(self, pairs: list[tuple[int, int]]) -> list[int]:
        ask = list(dict.fromkeys((a, b) for a, b in pairs if (a, b) not in self.known and (b, a) not in self.known))
        if ask:
            need = sorted({i for pair in ask for i in pair} - set(self.texts))
            self.texts.update(zip(need, user_texts(self.plan, np.asarray(need, dtype=np.int64))))
            table = TextRows({"a": [self.texts[a] for a, _ in ask], "b": [self.texts[b] for _, b in ask]})
            plan = self.caller.plan(table, COMPARE_TEMPLATE, compare_schema(), system=COMPARE_SYSTEM, online=True)
            better = self.caller.run("compare", plan)["better"].to_pylist()
            for (a, b), answer in zip(ask, better):
                self.known[(a, b)] = b if answer == "B" else a  # a failed comparison keeps the earlier row
        return [self.known[(a, b)] if (a, b) in self.known else self.known[(b, a)] for a, b in pairs]
