"""The semantic operators beyond a DataFrame: on pandas and Polars Series, on a Polars LazyFrame, their async twins;
the options they pass on to generate; their cached re-runs through the run memo and the structured-answer path."""

from __future__ import annotations

import asyncio

import pandas as pd
import polars as pl
import pytest
from pydantic import BaseModel

import llmframe
from llmframe.errors import ConfigError
from llmframe.ops import semantic
from llmframe.testing import rule_answer
from llmframe.testing.rules import merit, verdict

MODEL = "openai:sim-model"
TICKETS = ["I want a refund for order 7", "The app crashes every 3 minutes", "How do I export to CSV?",
           "Refund me, charged twice, waited 12 days", "Love it", "Crash on start since 40 days"]
LABELS = ["refund", "crash", "other"]
QUESTION = 'Does the customer ask for a "refund"? {}'


@pytest.fixture
def kw(sim):
    sim.answer = rule_answer
    return {"model": MODEL, "base_url": sim.base_url, "api_key": sim.api_key, "progress": False}


def values(out) -> list:
    return out.tolist() if isinstance(out, (pd.Series, pd.DataFrame)) else out.to_list()


@pytest.mark.parametrize("kind", ["pandas", "polars"])
def test_filter_and_classify_on_a_series(kw, sim, kind):
    s = pd.Series(TICKETS, index=list("abcdef"), name="text") if kind == "pandas" else pl.Series("text", TICKETS)
    kept = s.llm.filter(QUESTION, **kw)
    expected = [t for t in TICKETS if verdict(QUESTION.format(t))[0]]
    assert values(kept) == expected == [TICKETS[0], TICKETS[3]]
    if kind == "pandas":
        assert list(kept.index) == ["a", "d"]  # the Series' own index
    report = llmframe.last_report()
    assert report["operator"] == "filter" and report["calls"] == len(TICKETS) and report["kept"] == 2
    mask = s.llm.filter(QUESTION, mask=True, **kw)
    assert values(mask) == [t in expected for t in TICKETS]
    labels = s.llm.classify("Ticket: {}", labels=LABELS, **kw)
    assert values(labels) == ["refund", "other", "other", "refund", "other", "crash"]  # "crashes" is not "crash"
    if kind == "pandas":
        assert list(labels.cat.categories) == LABELS and list(labels.index) == list("abcdef")
    else:
        assert labels.dtype == pl.Enum(LABELS) and labels.name == "label"
    sent = sim.count  # the same calls as generate on the Series with the operator's prompt and schema
    same = s.llm.generate(QUESTION, **semantic.call_of("filter"), **kw)
    answers = same["answer"] if isinstance(same, (pd.DataFrame, pl.DataFrame)) else same  # one field: a Series
    assert sim.count == sent and values(answers) == [t in expected for t in TICKETS]


@pytest.mark.parametrize("kind", ["pandas", "polars"])
def test_top_k_rank_and_explain_on_a_series_give_the_values_beside_their_columns(kw, sim, kind):
    texts = ["waited 5 days", "waited 50 days", "no wait", "waited 7 days"]
    s = pd.Series(texts) if kind == "pandas" else pl.Series(texts)  # no name: the values are "value"
    best = s.llm.top_k("{}", k=2, **kw)
    assert values(best["value"]) == ["waited 50 days", "waited 7 days"] and values(best["score"]) == [50, 7]
    ranked = s.llm.rank("{}", **kw)
    assert [merit(t) for t in values(ranked["value"])] == [50, 7, 5, 0]
    explained = s.llm.filter('Does it say "days"? {}', explain=True, **kw)
    assert list(explained.columns) == ["value", "reason"] and len(explained) == 3


def test_operators_on_a_struct_series_read_its_fields(kw, sim):
    s = pl.DataFrame({"title": ["refund please", "hello"], "body": ["x", "y"]}).to_struct("ticket")
    out = s.llm.classify("{title}: {body}", labels=LABELS, **kw)
    assert out.to_list() == ["refund", "other"]


def test_lazyframe_operators_run_when_collected(kw, sim):
    lf = pl.LazyFrame({"text": TICKETS, "n": list(range(len(TICKETS)))})
    query = (lf.llm.filter('Is it about a "crash"? {text}', explain=True, **kw)
             .llm.classify("{text}", labels=LABELS, **kw))
    assert sim.count == 0  # nothing is read or sent until collected
    assert query.collect_schema() == pl.Schema({"text": pl.String, "n": pl.Int64, "reason": pl.String,
                                                "label": pl.Enum(LABELS)})
    out = query.collect()
    assert out["n"].to_list() == [1, 5] and out["label"].to_list() == ["other", "crash"]
    top = lf.llm.top_k("{text}", k=2, **kw).collect()
    assert top["n"].to_list() == [5, 3] and top.schema["score"] == pl.Float64
    assert lf.llm.rank("{text}", **kw).collect()["n"].to_list()[:2] == [5, 3]


def test_lazyframe_operators_check_the_call_when_made(kw, sim):
    lf = pl.LazyFrame({"text": TICKETS})
    with pytest.raises(ConfigError, match="given more than once"):
        lf.llm.classify("{text}", labels=["a", "a"], **kw)
    with pytest.raises(Exception, match="nope"):
        lf.llm.filter('"x" {nope}', **kw)
    with pytest.raises(ConfigError, match="k must be an integer"):
        lf.llm.top_k("{text}", k=0, **kw)
    for name in ("dry_run", "mask"):
        with pytest.raises(ConfigError, match=f"{name}=True on a LazyFrame"):
            lf.llm.filter("{text}", **{name: True}, **kw)
    assert sim.count == 0


def test_async_twins(kw, sim):
    df = pd.DataFrame({"text": TICKETS})

    async def main():
        kept, labels = await asyncio.gather(df.llm.afilter('Is it a "refund"? {text}', **kw),
                                            df.llm.aclassify("{text}", labels=LABELS, **kw))
        summary = await df.llm.aagg("Summarise {text}", **kw)
        series = await pl.Series(TICKETS).llm.afilter('Is it a "crash"? {}', **kw)
        return kept, labels, summary, series

    kept, labels, summary, series = asyncio.run(main())
    assert kept["text"].tolist() == [TICKETS[0], TICKETS[3]]
    assert labels["label"].tolist()[:2] == ["refund", "other"]
    assert summary["response"].tolist() == [f"{len(TICKETS)} rows"]
    assert series.to_list() == [TICKETS[1], TICKETS[5]]


def test_an_operator_passes_generates_options_on(kw, sim):
    df = pd.DataFrame({"text": TICKETS[:2]})
    df.llm.filter('Is it a "refund"? {text}', temperature=0.3, seed=7, params={"top_logprobs": None},
                  system="Be terse.", max_tokens=9, **kw)
    body = sim.requests[-1].body
    assert body["temperature"] == 0.3 and body["seed"] == 7 and body["max_tokens"] == 9
    assert body["messages"][0]["content"] == f"{semantic.FILTER_SYSTEM}\n\nBe terse."
    sent = sim.count
    with pytest.raises(ConfigError, match="cascade="):  # reaches planning: issue 24's cascades plug in there
        df.llm.filter('Is it a "refund"? {text}', cascade=["openai:other-model"], **kw)
    assert sim.count == sent


def test_a_cached_rerun_of_an_operator_is_answered_by_the_run_memo(kw, sim):
    df = pd.DataFrame({"text": [f"ticket {i}: {'refund' if i % 3 == 0 else 'other'}" for i in range(5000)]})
    question = 'Does it ask for a "refund"? {text}'
    first = df.llm.filter(question, **kw)
    assert first.llm.report["memo_rows"] == 0 and sim.count == 5000
    again = df.llm.filter(question, **kw)
    assert again.llm.report["memo_rows"] == 5000 and again.llm.report["cached"] == 5000 and sim.count == 5000
    assert again["text"].tolist() == first["text"].tolist()
    changed = df.assign(text=df["text"].where(df.index != 4999, "ticket: refund"))
    out = changed.llm.filter(question, **kw)  # the changed chunk through the per-row path: one row sent
    assert sim.count == 5001 and out.llm.report["memo_rows"] == 4096 and out["text"].tolist()[-1] == "ticket: refund"
    labels = df.llm.classify("{text}", labels=LABELS, **kw)
    assert df.llm.classify("{text}", labels=LABELS, **kw).llm.report["memo_rows"] == 5000
    assert labels["label"].value_counts().to_dict() == {"refund": 1667, "other": 3333, "crash": 0}


class Tags(BaseModel):
    tags: list[str]
    n: int


def test_a_repeated_structured_answer_is_checked_once_but_each_rows_list_is_its_own(kw, sim):
    sim.answer = lambda body: '{"tags": ["a", "b"], "n": 1}'
    out = pd.DataFrame({"text": [f"row {i}" for i in range(4)]}).llm.generate("{text}", output=Tags, **kw)
    assert out["tags"].tolist() == [["a", "b"]] * 4 and out["n"].tolist() == [1] * 4
    out["tags"].iloc[0].append("c")  # a user's edit of one cell
    assert out["tags"].tolist()[1:] == [["a", "b"]] * 3
    again = pd.DataFrame({"text": [f"row {i}" for i in range(4)]}).llm.generate("{text}", output=Tags, cache=True,
                                                                                   **kw)
    assert again.llm.report["cached"] == 4 and again["tags"].tolist() == [["a", "b"]] * 4


def test_rank_reruns_from_the_memo_and_top_k_from_the_per_row_cache(kw, sim):
    df = pd.DataFrame({"text": [f"waited {i % 100} hours" + " !" * (i // 100) for i in range(300)]})
    df.llm.rank("{text}", **kw)
    sent = sim.count
    again = df.llm.rank("{text}", **kw)
    assert again.llm.report["memo_rows"] == 300 and sim.count == sent
    assert [merit(t) for t in again["text"]] == sorted((i % 100 for i in range(300)), reverse=True)
    top = df.llm.top_k("{text}", k=3, **kw)  # its comparisons read the scores' prompts: no memo for them
    assert top.llm.report["memo_rows"] == 0 and top.llm.report["stages"]["score"]["cached"] == 300
    assert [merit(t) for t in top["text"]] == [99, 99, 99]


def test_lazyframe_operators_in_batch_mode(kw, sim):
    lf = pl.LazyFrame({"text": TICKETS})
    out = lf.llm.filter('Is it a "refund"? {text}', mode="batch", poll_interval=0.02, **kw).collect()
    assert out["text"].to_list() == [TICKETS[0], TICKETS[3]]
    assert llmframe.last_report()["mode"] == "batch"


def test_async_join_top_k_and_rank(kw, sim):
    left = pd.DataFrame({"name": ["red scarf", "blue hat"]})
    right = pd.DataFrame({"title": ["a red scarf for sale", "a blue hat, new"]})
    texts = pd.DataFrame({"text": ["waited 5 days", "waited 50 days", "waited 7 days"]})

    async def main():
        return await asyncio.gather(
            left.llm.ajoin(right, 'Is "{left.name}" the product in: {right.title}?', candidates=2, **kw),
            texts.llm.atop_k("{text}", k=2, **kw), texts.llm.arank("{text}", **kw))

    pairs, best, ranked = asyncio.run(main())
    assert sorted(zip(pairs["name"], pairs["title"])) == [("blue hat", "a blue hat, new"),
                                                          ("red scarf", "a red scarf for sale")]
    assert best["text"].tolist() == ["waited 50 days", "waited 7 days"]
    assert ranked["score"].tolist() == [50, 7, 5]
