"""Answers: a run's results held column-wise, still readable and writable one Response at a time."""

from __future__ import annotations

import numpy as np

from llmframe.engine.answers import Answers
from llmframe.plan.request import Response


def test_a_response_round_trips_through_the_columns():
    answers = Answers(3)
    answers[1] = Response("hi", 3, 4, "stop")
    answers[2] = Response.failure("boom")
    assert answers[0] is None
    assert answers[1] == Response("hi", 3, 4, "stop")
    assert answers[2].error == "boom"
    assert answers.failed().tolist() == [True, False, True]  # never answered counts as failed
    assert answers.error_notes() == {0: "not answered (the run stopped first)", 2: "boom"}


def test_incomplete_and_empty_answers_are_noted_not_failed():
    answers = Answers.of([Response("cut", 1, 9, "length"), Response("", 1, 0, "stop"), Response("ok", 1, 1, None)])
    assert answers.failed().tolist() == [False, False, False]
    assert answers.error_notes() == {0: "incomplete answer: finish_reason='length' (max_tokens reached)",
                                     1: "empty answer"}
    assert answers.finish_counts(np.array([2, 1, 1])) == {"length": 2, "stop": 1, "unknown": 1}  # no reason given


def test_cache_values_fill_the_columns_and_stale_answers_stay_undone():
    values = [Response(text, 2, 5, "stop").to_cache("openai:m", 0.0) for text in ("good", "bad", "good2")]
    answers = Answers(4, structured=True)

    def check(text):
        return (text.upper(), None) if text.startswith("good") else (None, "does not validate")

    stale = answers.fill_from_cache([0, 2, 3], values, check)
    assert stale == [2]
    assert answers.done.tolist() == [True, False, False, True]
    assert answers.cached.tolist() == [True, False, False, True]
    assert answers[3] == Response("good2", 2, 5, "stop", cached=True, parsed="GOOD2")
    assert answers.input_tokens.tolist() == [2, 0, 0, 2]


def test_complete_blocks_are_sealed_into_arrow_and_late_answers_still_count():
    answers = Answers(5, block=2)
    answers[0] = Response("a", 1, 1, "stop")
    assert not answers._sealed, "a block is sealed only once every answer in it is in"
    answers[1] = Response("b", 1, 1, "stop")
    answers.fill_from_cache([2, 3], [Response(t, 1, 1, "stop").to_cache("m", 0.0) for t in ("c", "d")])
    assert sorted(answers._sealed) == [0, 1], "complete blocks are sealed"
    assert not answers._open, "sealed texts leave Python, and a block with no answer yet holds no list"
    answers[1] = Response("b2", 1, 1, "stop")  # a re-asked answer after its block was sealed
    assert answers.text(1) == "b2" and answers[3].text == "d"
    assert answers.text_array().to_pylist() == ["a", "b2", "c", "d", None]


def test_a_whole_block_read_from_the_cache_is_sealed_at_once_in_any_order():
    for order in ([0, 1, 2, 3], [3, 1, 2, 0]):
        answers = Answers(6, block=4)
        answers.fill_from_cache(order, [Response(f"t{j}", 1, 1, "stop").to_cache("m", 0.0) for j in order])
        assert 0 in answers._sealed and not answers._open, order
        assert answers.text_array().to_pylist() == ["t0", "t1", "t2", "t3", None, None], order
        assert [answers.text(j) for j in range(4)] == ["t0", "t1", "t2", "t3"], order
