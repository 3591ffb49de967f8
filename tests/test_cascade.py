"""Model cascades: the first model answers every row, only its unsure rows go on; calibrate= picks thresholds."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from pydantic import BaseModel

from llmframe.errors import ConfigError

SMALL, BIG = "openai:small", "openai:big"
PRICES = {SMALL: {"input_mtok": 0.15, "output_mtok": 0.6}, BIG: {"input_mtok": 2.5, "output_mtok": 10.0}}


class Label(BaseModel):
    label: str
    confidence: float


def truth(text: str) -> str:
    return "pos" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 2 else "neg"


def answer(body: dict) -> str:
    """The big model is always right; the small one is right and sure on 80% of rows, unsure (and often wrong) else."""
    text = body["messages"][-1]["content"]
    if body["model"] == "big":
        return json.dumps({"label": truth(text), "confidence": 0.99})
    if int(hashlib.sha256(("s" + text).encode()).hexdigest(), 16) % 10 < 8:
        return json.dumps({"label": truth(text), "confidence": 0.9})
    return json.dumps({"label": "pos", "confidence": 0.3})


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review {i}" for i in range(n)]})


@pytest.fixture
def cascading(gen, sim):
    sim.answer = answer

    def call(df, **kwargs):
        kwargs.setdefault("output", Label)
        return gen(df, "Label: {review}", model=SMALL, prices=PRICES, **kwargs)

    return call


def test_only_unsure_rows_reach_the_next_model(cascading, sim):
    df = reviews(100)
    out = cascading(df, cascade=[BIG])
    unsure = [r for r in df.review if answer({"model": "small", "messages": [{"content": f"Label: {r}"}]})
              .find("0.3") >= 0]
    big = [e for e in sim.requests if e.body["model"] == "big"]
    assert len(big) == len(unsure) and sim.count == 100 + len(unsure)
    assert out["label"].tolist() == [truth(f"Label: {r}") for r in df.review]  # every row right in the end
    entry = out.llm.report["cascade"]
    assert entry["rows_per_model"] == {SMALL: 100 - len(unsure), BIG: len(unsure)}
    assert entry["thresholds"] == [0.8]
    assert entry["cost"] < entry["cost_all_on_last_model"] and 0 < entry["cost_ratio_to_last_model"] < 0.5
    assert entry["cost"] == pytest.approx(sum(entry["cost_per_model"].values()))
    assert out.llm.report["input_tokens"] == entry["input_tokens"] == sum(e.billed[0] for e in sim.requests)


def test_a_threshold_per_stage_and_the_first_model_named_again(cascading, sim):
    out = cascading(reviews(40), cascade=[SMALL, (BIG, 0.2)])  # nobody is that unsure: the big model is idle
    assert all(e.body["model"] == "small" for e in sim.requests)
    assert out.llm.report["cascade"]["rows_per_model"][BIG] == 0


def test_calibrate_chooses_the_threshold_for_the_target_agreement(cascading, sim):
    out = cascading(reviews(200), cascade=[BIG], calibrate=60)
    entry = out.llm.report["cascade"]
    calibration = entry["calibration"]
    assert calibration["rows"] == 60 and calibration["agreement"] >= calibration["target_agreement"]
    assert 0.3 < entry["thresholds"][0] <= 0.9  # the unsure answers' 0.3 must go on; the sure ones' 0.9 may stay
    assert out["label"].tolist() == [truth(f"Label: {r}") for r in reviews(200).review]
    assert entry["cost"] > sum(entry["cost_per_model"].values())  # the calibration sample is paid for too


def test_failed_rows_go_on(cascading, sim):
    def flaky(body):
        if body["model"] == "small" and body["messages"][-1]["content"].endswith(" 3"):
            return "not json at all"
        return answer(body)

    sim.answer = flaky
    out = cascading(reviews(6), cascade=[BIG], invalid_retries=0)
    assert out["label"].notna().all() and out.llm.report["cascade"]["rows_per_model"][BIG] >= 1


@pytest.mark.parametrize("kwargs, words", [
    ({"cascade": ["anthropic:claude-haiku-4-5", BIG], "output": "text"}, "confidence"),
    ({"cascade": ["gpt-4o"]}, "provider:model"),
    ({"cascade": [(BIG, 2)]}, "0 to 1"),
    ({"cascade": []}, "list of models"),
    ({"cascade": [BIG], "usage": True}, "usage columns"),
])
def test_refused_before_anything_is_sent(cascading, sim, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        cascading(reviews(3), **kwargs)
    assert sim.count == 0


def test_submit_refuses_a_cascade(gen, sim):
    with pytest.raises(ConfigError, match="cascade= works with generate"):
        reviews(3).llm.submit("{review}", model=SMALL, output=Label, cascade=[BIG], base_url=sim.base_url,
                              api_key=sim.api_key, mode="online")


def test_a_polars_frame_cascades_too(sim):
    pl = pytest.importorskip("polars")
    sim.answer = answer
    df = pl.DataFrame({"review": [f"review {i}" for i in range(30)]})
    out = df.llm.generate("Label: {review}", model=SMALL, output=Label, prices=PRICES, cascade=[BIG],
                          base_url=sim.base_url, api_key=sim.api_key, progress=False)
    assert out["label"].to_list() == [truth(f"Label: review {i}") for i in range(30)]
    assert out.llm.report["cascade"]["rows_per_model"][BIG] > 0


def test_text_answers_cascade_on_their_token_log_probabilities(gen, sim):
    def sure(body, text):  # the small model is unsure of rows ending in 7 or 9
        unsure = body["model"] == "small" and body["messages"][-1]["content"][-1] in "79"
        return 0.4 if unsure else 0.97

    sim.confidence = sure
    out = gen(reviews(30), "Label: {review}", model=SMALL, cascade=[BIG], prices=PRICES)
    small = [e for e in sim.requests if e.body["model"] == "small"]
    big = [e for e in sim.requests if e.body["model"] == "big"]
    assert all(e.body["logprobs"] is True for e in small) and all("logprobs" not in e.body for e in big)
    assert sorted(e.body["messages"][-1]["content"][-1] for e in big) == ["7"] * 3 + ["9"] * 3
    entry = out.llm.report["cascade"]
    assert entry["rows_per_model"] == {SMALL: 24, BIG: 6}
    sim.reset()
    again = gen(reviews(30), "Label: {review}", model=SMALL, cascade=[BIG], prices=PRICES)
    assert sim.count == 0  # the confidences came back from the cache with the answers
    assert again["response"].tolist() == out["response"].tolist()


def test_a_provider_without_log_probabilities_needs_a_confidence_field(sim):
    with pytest.raises(ConfigError, match="no token log-probabilities"):
        reviews(3).llm.generate("{review}", model="anthropic:claude-haiku-4-5", cascade=[BIG],
                                base_url=sim.anthropic_base_url, api_key=sim.api_key, progress=False)
    assert sim.count == 0


def test_token_confidence_reads_openai_logprobs():
    import math

    from llmframe.providers.replies import openai

    body = {"choices": [{"message": {"content": "yes"}, "finish_reason": "stop",
                         "logprobs": {"content": [{"token": "y", "logprob": math.log(0.5)},
                                                  {"token": "es", "logprob": math.log(0.5)}]}}]}
    assert openai(body, None).confidence == pytest.approx(0.5)
    body["choices"][0]["logprobs"] = None
    assert openai(body, None).confidence is None


def test_llmframe_run_takes_a_cascade(tmp_path, sim):
    from llmframe.apps import cli

    args = cli.build_parser().parse_args(["run", "i.parquet", "o.parquet", "-t", "{x}", "-m", SMALL,
                                          "--cascade", BIG, "--cascade", "openai:huge=0.5", "--calibrate", "20"])
    assert cli.generate_options(args) == {"cascade": [BIG, ("openai:huge", 0.5)], "calibrate": 20}


def test_a_confidence_is_cached_after_a_tools_transcript():
    from llmframe.engine.answers import Answers
    from llmframe.plan.request import Response

    both = Response("yes", 3, 1, "stop", latency=0.1, transcript='[{"call": 1}]', confidence=0.25)
    alone = Response("no", 3, 1, "stop", confidence=0.5, batch=True)
    old = Response("maybe", 3, 1, "stop")
    values = Response.many_to_cache([both, alone, old], "openai:x", 1.0)
    back = Response.many_from_cache(values)
    assert [r.confidence for r in back] == [0.25, 0.5, None] and back[1].batch
    answers = Answers(3)
    answers.fill_from_cache([0, 1, 2], values, None)
    assert answers.transcripts == {0: '[{"call": 1}]'}
    assert [answers[j].confidence for j in range(3)] == [0.25, 0.5, None]
