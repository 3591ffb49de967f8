"""OpenAI's Responses API (api="responses") and reasoning models (reasoning_effort=), beyond the conformance suite."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import BaseModel

from llmframe.errors import ConfigError
from llmframe.testing import digest_answer

PRICES = {"openai:sim-model": {"input_mtok": 1_000_000, "output_mtok": 2_000_000}}  # $1 an input token, $2 an output


class Verdict(BaseModel):
    label: str
    score: int


def frame(n: int = 2) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"q{i}" for i in range(n)]})


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_the_request_is_the_responses_apis_and_its_answer_comes_back(gen, sim, transport):
    out = gen(frame(), "Say {q}", api="responses", system="Be brief.", max_tokens=50, temperature=0.5,
              provider_options={"transport": transport})
    assert out["response"].tolist() == [digest_answer("Say q0"), digest_answer("Say q1")]
    (first,) = [r for r in sim.requests if "Say q0" in str(r.body["input"])]  # requests run concurrently
    assert {r.path for r in sim.requests} == {"/v1/responses"}
    assert first.body["instructions"] == "Be brief." and first.body["input"] == [{"role": "user", "content": "Say q0"}]
    assert first.body["max_output_tokens"] == 50 and first.body["temperature"] == 0.5
    assert "messages" not in first.body and "max_tokens" not in first.body


def test_structured_outputs_go_as_text_format_json_schema(gen, sim):
    out = gen(frame(), "Judge {q}", output=Verdict, api="responses")
    assert out["verdict_error"].isna().all() and out["score"].dtype == "Int64"
    fmt = sim.requests[0].body["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "Verdict" and fmt["strict"] is True
    assert fmt["schema"]["required"] == ["label", "score"]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_reasoning_tokens_are_in_the_usage_columns_and_priced_as_output(gen, sim, api):
    out = gen(frame(), "{q}", api=api, reasoning_effort="low", usage=True, prices=PRICES)
    body = sim.requests[0].body
    assert (body["reasoning"] == {"effort": "low"}) if api == "responses" else (body["reasoning_effort"] == "low")
    plain = gen(frame(), "{q}", api=api, usage=True, prices=PRICES)["response_output_tokens"].tolist()
    assert out["response_reasoning_tokens"].tolist() == [8, 8]  # the simulator's "low"
    assert out["response_output_tokens"].tolist() == [t + 8 for t in plain]  # the thinking is output
    inputs = out["response_input_tokens"].tolist()
    assert out["response_cost"].tolist() == [i + 2 * (t + 8) for i, t in zip(inputs, plain)]
    assert out.attrs["llmframe"]["reasoning_tokens"] == 16
    again = gen(frame(), "{q}", api=api, reasoning_effort="low", usage=True, prices=PRICES)
    assert again["response_reasoning_tokens"].tolist() == [8, 8] and again.attrs["llmframe"]["cached"] == 2


def test_api_and_reasoning_effort_are_in_the_cache_key(gen, sim):
    gen(frame(), "{q}")
    gen(frame(), "{q}", api="chat")  # the default, spelled out: the same requests
    assert sim.count == 2
    gen(frame(), "{q}", api="responses")
    gen(frame(), "{q}", api="responses", reasoning_effort="high")
    assert sim.count == 6


def test_a_cut_answer_is_length_and_the_report_counts_finish_reasons(gen, sim):
    sim.answer = lambda body: "many words " * 40
    out = gen(frame(1), "{q}", api="responses", max_tokens=5)
    assert out.attrs["llmframe"]["finish_reasons"] == {"length": 1}


@pytest.mark.parametrize("api, params, named", [
    ("chat", {"max_output_tokens": 10}, "max_output_tokens is a parameter of the Responses API, not of api='chat'"),
    ("chat", {"reasoning": {"effort": "low"}}, "reasoning_effort="),
    ("responses", {"presence_penalty": 0.5}, "presence_penalty is a parameter of chat completions"),
])
def test_an_option_of_the_other_api_is_refused_before_sending(gen, sim, api, params, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        gen(frame(), "{q}", api=api, params=params)
    assert sim.count == 0


def test_stop_and_seed_are_chat_completions_only(gen, sim):
    for given in ({"stop": "x"}, {"seed": 3}):
        with pytest.raises(ConfigError, match="is a parameter of chat completions"):
            gen(frame(), "{q}", api="responses", **given)
    assert sim.count == 0


def test_api_and_reasoning_effort_on_another_provider_are_refused(gen, sim):
    with pytest.raises(ConfigError, match="api='responses' is for the openai and azure providers"):
        gen(frame(), "{q}", model="anthropic:claude", api="responses", api_key="k")
    with pytest.raises(ConfigError, match="reasoning_effort= is for OpenAI's reasoning models"):
        gen(frame(), "{q}", model="anthropic:claude", reasoning_effort="low", api_key="k")
    with pytest.raises(ConfigError, match="pass api=, not provider_options"):
        gen(frame(), "{q}", provider_options={"api": "responses"})
    assert sim.count == 0


def test_batch_mode_goes_through_the_batch_apis_responses_endpoint(gen, sim):
    online = gen(frame(3), "Judge {q}", output=Verdict, api="responses", cache=False)
    out = gen(frame(3), "Judge {q}", output=Verdict, api="responses", mode="batch", poll_interval=0.05,
              reasoning_effort="minimal", usage=True)
    assert out["verdict_error"].isna().all() and out[["label", "score"]].equals(online[["label", "score"]])
    assert out["verdict_reasoning_tokens"].tolist() == [4, 4, 4]
    (batch,) = [b for b in sim.batches.created]
    uploaded = [r for r in sim.requests if r.path == "/v1/responses"]
    assert len(uploaded) == 3  # the online run's; the batch's lines were not sent online
    assert out.attrs["llmframe"]["mode"] == "batch" and batch.requests == 3


def test_a_reasoning_model_on_chat_gets_max_completion_tokens(gen, sim):
    gen(frame(1), "{q}", reasoning_effort="medium", max_tokens=500)
    body = sim.requests[0].body
    assert body["max_completion_tokens"] == 500 and "max_tokens" not in body and body["reasoning_effort"] == "medium"


def test_estimate_counts_reasoning_as_output_and_says_its_assumption(sim):
    from llmframe import constants

    df = frame(4)
    plain = df.llm.estimate("{q}", model="openai:gpt-4o-mini", prices=PRICES | {"openai:gpt-4o-mini": PRICES[
        "openai:sim-model"]})
    thinking = df.llm.estimate("{q}", model="openai:gpt-4o-mini", reasoning_effort="high", api="responses",
                               prices={"openai:gpt-4o-mini": PRICES["openai:sim-model"]})
    extra = constants.REASONING_TOKENS_ESTIMATE["high"]
    assert thinking.output_tokens[1] == plain.output_tokens[1] + 4 * extra
    assert thinking.cost[1] == pytest.approx(plain.cost[1] + 4 * extra * 2)
    assert any("reasoning tokens are billed as output" in n and f"{extra:,}" in n for n in thinking.notes)
    bounded = df.llm.estimate("{q}", model="openai:gpt-4o-mini", reasoning_effort="high", max_tokens=100)
    assert bounded.output_tokens[1] == 400 and any("bounds reasoning and answer" in n for n in bounded.notes)


def test_api_with_a_provider_instance_names_the_fix(gen, sim):
    from llmframe.providers.openai import OpenAIProvider

    instance = OpenAIProvider("sim-model", api_key=sim.api_key, base_url=sim.base_url)
    with pytest.raises(ConfigError, match="pass model='openai:sim-model' \\(a string\\) with api="):
        gen(frame(), "{q}", model=instance, api="responses")
    assert sim.count == 0


def test_reasoning_tokens_round_trip_through_the_cache_value_beside_a_transcript():
    from llmframe.engine.answers import Answers
    from llmframe.plan.request import Response

    made = [Response("a", 3, 9, "stop", reasoning_tokens=5), Response("b", 3, 9, "stop", reasoning_tokens=5,
                                                                        transcript='[{"tool": "f"}]', batch=True),
            Response("c", 3, 4, "stop", transcript='[]'), Response("d", 3, 4, "stop")]
    values = Response.many_to_cache(made, "openai:m", 0.0)
    assert [r.reasoning_tokens for r in Response.many_from_cache(values)] == [5, 5, 0, 0]
    answers = Answers(4)
    answers.fill_from_cache([0, 1, 2, 3], values)
    assert answers.reasoning_tokens.tolist() == [5, 5, 0, 0]
    assert answers.transcripts == {1: '[{"tool": "f"}]', 2: "[]"}
