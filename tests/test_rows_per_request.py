"""rows_per_request=k: rows packed as numbered items, answers mapped back by id, re-asked alone when missing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import BaseModel

from llmframe.errors import ConfigError
from llmframe.testing.faults import Faults


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review number {i}, quite good" for i in range(n)]})


class Verdict(BaseModel):
    label: str
    stars: int


def test_packed_rows_get_the_answers_they_would_get_alone(gen, sim):
    template = "Sentiment of the review, one word, by these rules. " * 20 + "{review}"  # the fixed text: ~250 tokens
    alone = gen(reviews(25), template, cache=False)
    sim.reset()
    out = gen(reviews(25), template, rows_per_request=10, usage=True)
    assert sim.count == 3  # 10 + 10 + 5
    assert out["response"].tolist() == alone["response"].tolist()
    report = out.llm.report
    assert report["requests_sent"] == 3 and report["rows_per_request"] == {"size": 10, "packed_requests": 3,
                                                                           "rows_asked_alone": 0}
    # every billed token is counted, split over the pack's rows
    assert out["response_input_tokens"].sum() == sum(e.billed[0] for e in sim.requests) == report["input_tokens"]
    assert out["response_output_tokens"].sum() == sum(e.billed[1] for e in sim.requests)
    assert (out["response_input_tokens"] > 0).all()
    # the fixed text goes once per request: far fewer input tokens than one request per row
    assert report["input_tokens"] * 4 < alone.llm.report["input_tokens"]


def test_dropped_and_doubled_items_are_asked_alone_never_shifted(gen, sim):
    alone = gen(reviews(40), "Sentiment: {review}", cache=False)
    sim.reset()
    sim.faults = Faults(pack_drop_rate=0.15, pack_duplicate_rate=0.15, seed=3)
    out = gen(reviews(40), "Sentiment: {review}", rows_per_request=8, usage=True)
    assert out["response"].tolist() == alone["response"].tolist()  # every row has its own answer
    report = out.llm.report
    again = report["rows_per_request"]["rows_asked_alone"]
    assert again > 0 and report["requests_sent"] == 5 + again == sim.count
    assert out["response_input_tokens"].sum() == sum(e.billed[0] for e in sim.requests)
    assert out["response_output_tokens"].sum() == sum(e.billed[1] for e in sim.requests)


def test_each_row_is_cached_under_its_own_key_which_includes_the_packing(gen, sim):
    gen(reviews(12), "Sentiment: {review}", rows_per_request=4)
    assert sim.count == 3
    gen(reviews(12), "Sentiment: {review}", rows_per_request=4)
    assert sim.count == 3  # all from the cache
    part = gen(reviews(6), "Sentiment: {review}", rows_per_request=4)
    assert sim.count == 3 and part["response"].notna().all()  # a row's key does not depend on its neighbours
    gen(reviews(12), "Sentiment: {review}")
    assert sim.count == 15  # unpacked answers are other answers: keyed apart


def test_a_pydantic_model_per_item(gen, sim):
    alone = gen(reviews(9), "Judge: {review}", output=Verdict, cache=False)
    sim.reset()
    out = gen(reviews(9), "Judge: {review}", output=Verdict, rows_per_request=5)
    assert sim.count == 2
    assert out["label"].notna().all() and out["stars"].notna().all()
    assert out[["label", "stars"]].equals(alone[["label", "stars"]])


def test_anthropic_and_gemini_pack_too(sim):
    for model, base in (("anthropic:claude-sonnet-4-5", sim.anthropic_base_url),
                        ("gemini:gemini-2.5-flash", sim.gemini_base_url)):
        sim.reset()
        out = reviews(7).llm.generate("Sentiment: {review}", model=model, base_url=base, api_key=sim.api_key,
                                      progress=False, rows_per_request=7, output=Verdict)
        assert sim.count == 1 and out["label"].notna().all(), model


@pytest.mark.parametrize("template, kwargs, words", [
    (lambda row: row["review"], {}, "function template"),
    ([{"role": "user", "content": "{review}"}, {"role": "assistant", "content": "ok"},
      {"role": "user", "content": "again {review}"}], {}, "last message"),
    ("{review}", {"provider_options": {"batch_size": 2}, "model": "transformers:/nonexistent"}, "API providers"),
    ("{review}", {"structured": "json_object", "output": Verdict}, "json_schema"),
    ("{review}", {"rows_per_request": 1000}, "at most 100"),
    ("{review}", {"rows_per_request": 0}, ">= 1"),
])
def test_refused_where_it_cannot_work(gen, sim, template, kwargs, words):
    kwargs.setdefault("rows_per_request", 4)
    with pytest.raises(ConfigError, match=words):
        gen(reviews(3), template, **kwargs)
    assert sim.count == 0


def test_estimate_shows_the_saving(sim):
    df = reviews(100)
    template = "Rules of the task. " * 400 + "{review}"  # ~1,900 tokens of fixed text
    one = df.llm.estimate(template, model="openai:gpt-4o-mini", api_key="k")
    ten = df.llm.estimate(template, model="openai:gpt-4o-mini", api_key="k", rows_per_request=10, max_tokens=5)
    assert (one.uncached_requests, ten.uncached_requests) == (100, 10)
    assert ten.input_tokens * 5 < one.input_tokens
    assert any("rows_per_request=10" in note for note in ten.notes) and "up to 10 rows a request" in repr(ten)
    assert any(note.startswith("prompt cache:") for note in one.notes)  # the other lever, priced
    assert sim.count == 0


def test_an_invalid_item_fails_its_own_row_only(gen, sim):
    from llmframe.testing import default_answer

    def answer(body):  # row 3's answer never fits the schema, alone or packed
        if body["messages"][-1]["content"].endswith("number 3, quite good"):
            return json.dumps({"label": "x"})  # stars missing
        return default_answer(body)

    sim.answer = answer
    out = gen(reviews(8), "Judge: {review}", output=Verdict, rows_per_request=4, invalid_retries=0)
    assert out["label"].isna().tolist() == [False, False, False, True, False, False, False, False]
    assert "stars" in out["verdict_error"][3] and out["verdict_error"].drop(index=3).isna().all()
    assert out.llm.report["rows_per_request"]["rows_asked_alone"] == 1


def test_packed_rows_under_a_budget(gen, sim):
    out = gen(reviews(20), "Sentiment: {review}", rows_per_request=5, max_cost=100.0,
              prices={"openai:sim-model": {"input_mtok": 1.0, "output_mtok": 1.0}})
    assert out["response"].notna().all() and sim.count == 4


def test_refused_with_tools(gen, sim):
    def lookup(name: str) -> str:
        """Look a name up."""
        return name

    with pytest.raises(ConfigError, match="tools="):
        gen(reviews(3), "{review}", rows_per_request=2, tools=[lookup])
    assert sim.count == 0
