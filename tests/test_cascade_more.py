"""Cascades beyond generate: the semantic operators, agenerate, estimate, batch mode, and the verbs that refuse."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from llmframe import constants
from llmframe.errors import ConfigError
from llmframe.testing import rule_answer
from llmframe.testing.rules import verdict

SMALL, BIG = "openai:small", "openai:big"
PRICES = {SMALL: {"input_mtok": 0.15, "output_mtok": 0.6}, BIG: {"input_mtok": 2.5, "output_mtok": 10.0}}
TICKETS = ["I want a refund for order 7", "The app crashes every 3 minutes", "How do I export to CSV?",
           "Refund me, charged twice, waited 12 days", "Love it", "Crash on start since 40 days",
           "billing page shows 500 error", "Feature idea: dark mode"]


def unsure(body: dict) -> bool:
    text = body["messages"][-1]["content"]
    return isinstance(text, str) and ("Crash" in text or "500" in text or "order 7" in text)


@pytest.fixture
def kw(sim):
    sim.answer = rule_answer
    sim.confidence = lambda body, text: 0.3 if body["model"] == "small" and unsure(body) else 0.97
    return {"model": SMALL, "base_url": sim.base_url, "api_key": sim.api_key, "progress": False, "prices": PRICES}


def routed(sim) -> tuple[list, list]:
    small = [e for e in sim.requests if e.body["model"] == "small"]
    big = [e for e in sim.requests if e.body["model"] == "big"]
    return small, big


def test_filter_cascades_its_unsure_rows(kw, sim):
    df = pd.DataFrame({"text": TICKETS})
    question = 'Does the customer ask for a "refund"? {text}'
    out = df.llm.filter(question, cascade=[BIG], **kw)
    assert out["text"].tolist() == [t for t in TICKETS if verdict(question.format(text=t))[0]]
    small, big = routed(sim)
    assert len(small) == len(TICKETS) and all(e.body["logprobs"] is True for e in small)
    assert sorted(e.body["messages"][-1]["content"] for e in big) == sorted(
        e.body["messages"][-1]["content"] for e in small if unsure(e.body))
    assert out.llm.report["cascade"]["rows_per_model"] == {SMALL: 8 - len(big), BIG: len(big)} and big
    assert out.llm.report["cost"] == pytest.approx(sum(e.billed[0] * (0.15 if e.body["model"] == "small" else 2.5) +
                                              e.billed[1] * (0.6 if e.body["model"] == "small" else 10.0)
                                              for e in sim.requests) / 1e6, rel=1e-6)


def test_classify_cascades_and_reports_rows_per_model(kw, sim):
    df = pd.DataFrame({"text": TICKETS})
    out = df.llm.classify("Which team handles this ticket? {text}", labels=["billing", "bug", "question", "other"],
                          cascade=[BIG], **kw)
    small, big = routed(sim)
    assert len(small) == 8 and len(big) == 3  # the three unsure rows went on
    entry = out.llm.report["cascade"]
    assert entry["rows_per_model"] == {SMALL: 5, BIG: 3} and entry["cost"] < entry["cost_all_on_last_model"]
    plain = df.llm.classify("Which team handles this ticket? {text}", labels=["billing", "bug", "question", "other"],
                            **{**kw, "model": BIG})
    assert out["label"].tolist() == plain["label"].tolist()  # the rule answers alike on both models
    assert len(routed(sim)[1]) == 3 + 5  # the plain run on BIG found the cascade's three in the cache


def test_agenerate_cascades(kw, sim):
    df = pd.DataFrame({"text": TICKETS})
    out = asyncio.run(df.llm.agenerate("Answer: {text}", cascade=[BIG], **kw))
    entry = out.llm.report["cascade"]
    assert entry["rows_per_model"] == {SMALL: 5, BIG: 3}
    small, big = routed(sim)
    assert len(small) == 8 and len(big) == 3


def test_estimate_prices_the_cascade_with_its_assumption(kw, sim):
    df = pd.DataFrame({"text": TICKETS * 25})
    given = {k: v for k, v in kw.items() if k not in ("base_url", "api_key")}
    made = df.llm.estimate("Answer: {text}", cascade=[BIG], max_tokens=5, **given)
    small = df.llm.estimate("Answer: {text}", max_tokens=5, **given)
    big = df.llm.estimate("Answer: {text}", max_tokens=5, **{**given, "model": BIG})
    share = constants.CASCADE_ESTIMATE_SHARE
    for i in (0, 1):  # the small model's logprobs=true changes no token count here
        assert made.cost[i] == pytest.approx(small.cost[i] + share * big.cost[i], rel=1e-9)
    text = repr(made)
    assert "assumed: 20% of the rows" in text and f"{BIG} alone would cost" in text
    calibrated = df.llm.estimate("Answer: {text}", cascade=[BIG], calibrate=20, max_tokens=5, **given)
    assert calibrated.cost[1] == pytest.approx(small.cost[1] + (share + 20 / 8) * big.cost[1], rel=1e-9) \
        or calibrated.cost[1] > made.cost[1]
    assert sim.count == 0


def test_batch_mode_runs_each_stage_as_a_batch_job(kw, sim):
    df = pd.DataFrame({"text": TICKETS})
    out = df.llm.generate("Answer: {text}", cascade=[BIG], mode="batch", poll_interval=0.05, **kw)
    entry = out.llm.report["cascade"]
    assert entry["rows_per_model"] == {SMALL: 5, BIG: 3}
    assert out.llm.report["mode"] == "batch"


@pytest.mark.parametrize("verb", ["submit", "sweep"])
def test_submit_and_sweep_refuse_a_cascade_clearly(kw, sim, verb):
    df = pd.DataFrame({"text": TICKETS})
    with pytest.raises(ConfigError, match="cascade"):
        if verb == "submit":
            df.llm.submit("{text}", cascade=[BIG], mode="online", **kw)
        else:
            df.llm.sweep("{text}", models=[SMALL], cascade=[BIG],
                         **{k: v for k, v in kw.items() if k != "model"})
    assert sim.count == 0


def test_batch_output_with_cached_tokens_or_logprobs_is_read_line_by_line():
    """The fast Arrow reader of an output file reads text and tokens only: lines with cached tokens or
    log-probabilities go through the line reader, which keeps them."""
    import json

    from llmframe.batch.openai import parse_results

    def line(i, details=None, logprobs=None):
        usage = {"prompt_tokens": 100, "completion_tokens": 2,
                 "prompt_tokens_details": details or {"cached_tokens": 0}}
        choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop",
                  "logprobs": logprobs}
        return json.dumps({"id": f"l{i}", "custom_id": f"c{i}", "error": None,
                           "response": {"status_code": 200, "body": {"choices": [choice], "usage": usage}}})

    plain = parse_results("\n".join(line(i) for i in range(3)))
    assert [r.cached_input_tokens for r in plain.values()] == [0, 0, 0]
    cached = parse_results("\n".join([line(0), line(1, {"cached_tokens": 64})]))
    assert cached["c1"].cached_input_tokens == 64
    sure = {"content": [{"token": "ok", "logprob": -0.1, "bytes": [111, 107], "top_logprobs": []}]}
    found = parse_results("\n".join([line(0), line(1, logprobs=sure)]))
    assert found["c1"].confidence == pytest.approx(0.904837, rel=1e-5) and found["c0"].confidence is None


def test_an_operators_dry_run_prices_its_cascade(kw, sim):
    df = pd.DataFrame({"text": TICKETS * 10})
    given = {k: v for k, v in kw.items() if k not in ("base_url", "api_key")}
    question = 'Does the customer ask for a "refund"? {text}'
    made = df.llm.filter(question, cascade=[BIG], dry_run=True, **given)
    plain = df.llm.filter(question, dry_run=True, **given)
    big = df.llm.filter(question, dry_run=True, **{**given, "model": BIG})
    share = constants.CASCADE_ESTIMATE_SHARE
    assert made.cost[1] == pytest.approx(plain.cost[1] + share * big.cost[1], rel=1e-6)
    assert any("assumed: 20%" in n for _, e in made.stages for n in e.notes)
    assert sim.count == 0
