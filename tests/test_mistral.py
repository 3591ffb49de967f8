"""Mistral (model="mistral:<name>") beyond tests/test_conformance.py: its parameters, limits and prices."""

from __future__ import annotations

import pandas as pd
import pytest

from llmframe.engine.ratelimit import server_limits
from llmframe.errors import ConfigError
from llmframe.providers.mistral import MistralProvider
from llmframe.testing import Faults


@pytest.fixture
def mistral(sim, monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-SECRET")

    def gen(obj, template, **kwargs):
        kwargs.setdefault("model", "mistral:mistral-small-latest")
        kwargs.setdefault("base_url", sim.mistral_base_url)
        kwargs.setdefault("progress", False)
        return obj.llm.generate(template, **kwargs)

    return gen


def frame(n: int = 2) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"q{i}" for i in range(n)]})


def test_the_request_is_mistrals_seed_as_random_seed(mistral, sim):
    out = mistral(frame(), "{q}", seed=7, temperature=0.2, system="Be brief.")
    assert out["response_error"].isna().all()
    body = sim.requests[0].body
    assert sim.requests[0].path == "/mistral/v1/chat/completions"
    assert body["random_seed"] == 7 and "seed" not in body and body["model"] == "mistral-small-latest"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_mistrals_rate_limit_headers_are_read():
    headers = {"x-ratelimit-limit-req-minute": "720", "x-ratelimit-remaining-req-minute": "717",
               "x-ratelimit-limit-tokens-minute": "5000000", "x-ratelimit-remaining-tokens-minute": "4999911"}
    dialects = MistralProvider.ratelimit_headers
    assert server_limits(headers, "requests", dialects) == (720, 717, None)
    assert server_limits(headers, "tokens", dialects) == (5000000, 4999911, None)


def test_the_limiter_learns_mistrals_limits_from_the_simulator(mistral, sim):
    from llmframe.engine import ratelimit

    sim.faults = Faults(rpm=600)
    out = mistral(frame(3), "{q}")
    assert out["response_error"].isna().all()
    (limiter,) = [lim for key, lim in ratelimit._limiters.items() if key[0] == "mistral"]
    assert limiter.requests is not None and limiter.requests.per_minute <= 600  # paced at what the server said


def test_priced_by_genai_prices(mistral, sim):
    out = mistral(frame(), "{q}", usage=True)
    assert out["response_cost"].notna().all() and (out["response_cost"] > 0).all()


def test_reasoning_effort_and_api_are_refused_for_mistral(mistral, sim):
    with pytest.raises(ConfigError, match="reasoning_effort= is for OpenAI's reasoning models"):
        mistral(frame(), "{q}", reasoning_effort="low")
    with pytest.raises(ConfigError, match="api='responses' is for the openai and azure providers"):
        mistral(frame(), "{q}", api="responses")
    assert sim.count == 0


def test_batch_mode_goes_through_mistrals_batch_api(mistral, sim):
    from pydantic import BaseModel

    class Verdict(BaseModel):
        label: str
        score: int

    online = mistral(frame(3), "Judge {q}", output=Verdict, cache=False)
    out = mistral(frame(3), "Judge {q}", output=Verdict, mode="batch", poll_interval=0.05, usage=True, seed=3)
    assert out["verdict_error"].isna().all() and out.attrs["llmframe"]["mode"] == "batch"
    assert out[["label", "score"]].equals(online[["label", "score"]])
    (created,) = sim.batches.created
    assert created.vendor == "mistral" and created.requests == 3
    lines = sim.batches.requests(created.id)
    assert all(line["model"] == "mistral-small-latest" and line["random_seed"] == 3 for line in lines)
    assert (out["verdict_cost"] > 0).all()  # at Mistral's batch price
    again = mistral(frame(3), "Judge {q}", output=Verdict, mode="batch", poll_interval=0.05, seed=3)
    assert again.attrs["llmframe"]["cached"] == 3 and len(sim.batches.created) == 1
