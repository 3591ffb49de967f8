"""Gemini specifics (the request body, error mapping, faults) beyond tests/test_conformance.py."""

from __future__ import annotations


import pandas as pd
import pytest
from pydantic import BaseModel, Field

from llmframe.testing import Faults, SimulatedError, digest_answer

pytest.importorskip("google.genai")

pytestmark = pytest.mark.timeout(60)

MODEL = "gemini:sim-model"


@pytest.fixture
def ggen(gen, sim, monkeypatch):
    """gen pointed at the simulator's Gemini route."""
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)

    def call(obj, template, **kwargs):
        kwargs.setdefault("model", MODEL)
        kwargs.setdefault("base_url", sim.gemini_base_url)
        return gen(obj, template, **kwargs)

    return call


def frame(n: int, index=None) -> pd.DataFrame:
    return pd.DataFrame({"x": [f"item {i}" for i in range(n)]}, index=index)


class Mood(BaseModel):
    mood: str
    level: int = Field(ge=0, le=10)


def test_system_prompt_and_params_reach_the_body(ggen, sim):
    out = ggen(frame(1), "Describe {x}", system="be brief", temperature=0.3, top_p=0.5, max_tokens=64, seed=7,
               stop=["END"])
    assert out["response"].iloc[0] == digest_answer("Describe item 0")
    body = sim.requests[-1].body
    assert body["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert [c["role"] for c in body["contents"]] == ["user"]
    config = body["generationConfig"]
    assert config["temperature"] == 0.3 and config["topP"] == 0.5
    assert config["maxOutputTokens"] == 64 and config["seed"] == 7 and config["stopSequences"] == ["END"]


def test_max_tokens_truncation_is_length(ggen, sim):
    out = ggen(frame(1), "{x}", max_tokens=2)
    assert out["response"].iloc[0] == digest_answer("item 0")[:8]
    assert sim.requests[-1].body["generationConfig"]["maxOutputTokens"] == 2


def test_structured_output_becomes_typed_columns(ggen, sim):
    out = ggen(frame(3, index=list("abc")), "How does {x} feel?", output=Mood)
    assert list(out.columns) == ["x", "mood", "level", "mood_error"]
    assert out["mood_error"].isna().all()
    assert out["level"].dtype == "Int64" and out["level"].between(0, 10).all()
    config = sim.requests[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json" and "responseJsonSchema" in config


def test_rate_limits_are_retried_then_give_up(ggen, sim):
    sim.faults = Faults(error_rates={429: 1.0}, retry_after=0.05)
    out = ggen(frame(2), "{x}", max_attempts=2)
    assert out["response"].isna().all()
    assert out["response_error"].str.startswith("HTTP 429").all()
    assert out["response_error"].str.endswith("(after 2 attempts)").all()
    assert sim.count == 4


def test_the_key_comes_from_the_environment(gen, sim, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", sim.api_key)
    out = gen(frame(1), "{x}", model=MODEL, base_url=sim.gemini_base_url, api_key=None)
    assert out["response"].iloc[0] == digest_answer("item 0")


def test_a_bad_key_aborts_the_run(ggen, sim, monkeypatch):
    from llmframe.errors import ProviderError
    from llmframe.providers.gemini import GeminiProvider
    from google.genai import errors as genai_errors

    provider = GeminiProvider("m", api_key="k", base_url=sim.gemini_base_url, max_concurrency=1, timeout=5)
    error = genai_errors.ClientError(400, {"error": {"code": 400, "message": "API key not valid. Please pass a "
                                                    "valid API key.", "status": "INVALID_ARGUMENT"}})
    mapped = provider.api_error(error)
    assert isinstance(mapped, ProviderError) and mapped.status == 401 and not mapped.retryable
    other = provider.api_error(genai_errors.ClientError(400, {"error": {"code": 400, "message": "bad field"}}))
    assert other.status == 400


SERVER_FAULTS = [
    ("malformed_rate", "malformed response"),
    ("empty_choices_rate", "no candidates"),
    ("html_rate", "HTTP 502"),
    ("reset_rate", "connection error"),
    ("hang_rate", "timed out"),
]


@pytest.mark.parametrize("fault, message", SERVER_FAULTS, ids=[f for f, _ in SERVER_FAULTS])
def test_a_broken_server_gives_per_row_errors_after_retries(ggen, sim, fault, message):
    sim.faults = Faults(**{fault: 1.0})
    timeout = 0.5 if fault == "hang_rate" else 30  # only a hang should time out, however slow the machine
    out = ggen(frame(2), "{x}", max_attempts=2, timeout=timeout)
    assert out["response"].isna().all()
    errors = out["response_error"].tolist()
    if message:
        assert out["response_error"].str.contains(message).all(), errors
    assert out["response_error"].str.endswith("(after 2 attempts)").all(), errors
    assert sim.count == 4


def test_retry_after_reaches_the_limiter(ggen, sim):
    calls = []

    def answer(body):
        calls.append(body)
        if len(calls) == 1:
            raise SimulatedError(429, "slow down", headers={"retry-after": "0.2"})
        return digest_answer(body["messages"][-1]["content"])

    sim.answer = answer
    out = ggen(frame(1), "{x}", max_attempts=3)
    assert out["response"].iloc[0] == digest_answer("item 0")
    report = out.attrs["llmframe"]
    assert report["rate_limited"] == 1 and report["retries"] == 1
    first, second = sim.requests
    assert second.time - first.time >= 0.2
