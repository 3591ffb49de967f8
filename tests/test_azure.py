"""Azure OpenAI (model="azure:<deployment>") beyond tests/test_conformance.py: paths, auth, errors, batch."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import BaseModel

from llmframe.errors import ConfigError
from llmframe.testing import digest_answer

VERSION = "2025-04-01-preview"


class Verdict(BaseModel):
    label: str
    score: int


@pytest.fixture
def azure(sim, monkeypatch):
    """gen() for model="azure:my-deployment" against the simulator, its endpoint, key and version in the environment."""
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", sim.azure_endpoint)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-SECRET-key")
    monkeypatch.setenv("OPENAI_API_VERSION", VERSION)

    def gen(obj, template, **kwargs):
        kwargs.setdefault("model", "azure:my-deployment")
        kwargs.setdefault("progress", False)
        return obj.llm.generate(template, **kwargs)

    return gen


def frame(n: int = 2) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"q{i}" for i in range(n)]})


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_requests_take_azures_path_key_header_and_api_version(azure, sim, transport):
    seen = []
    sim.answer = lambda body: seen.append(body["model"]) or digest_answer(body["messages"][-1]["content"])
    out = azure(frame(), "{q}", provider_options={"transport": transport})
    assert out["response"].tolist() == [digest_answer("q0"), digest_answer("q1")]
    assert {r.path for r in sim.requests} == {"/openai/deployments/my-deployment/chat/completions"}
    assert seen == ["my-deployment"] * 2  # the deployment is the model


def test_an_entra_token_provider_authenticates_without_a_key(azure, sim, monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    asked = []

    async def token() -> str:  # what azure.identity.aio.get_bearer_token_provider returns
        asked.append(1)
        return "entra-token"

    out = azure(frame(), "{q}", provider_options={"azure_ad_token_provider": token})
    assert out["response_error"].isna().all() and len(asked) >= 2  # asked before each request


def test_without_endpoint_api_version_or_credentials_the_error_names_the_fix(azure, sim, monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT")
    with pytest.raises(ConfigError, match="no endpoint for azure: set AZURE_OPENAI_ENDPOINT, or pass base_url="):
        azure(frame(), "{q}")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", sim.azure_endpoint)
    monkeypatch.delenv("OPENAI_API_VERSION")
    with pytest.raises(ConfigError, match="no API version for azure: set OPENAI_API_VERSION, or pass "
                                          "provider_options=\\{'api_version'"):
        azure(frame(), "{q}")
    out = azure(frame(), "{q}", provider_options={"api_version": VERSION})  # given, not from the environment
    assert out["response_error"].isna().all()
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="no API key for azure: set AZURE_OPENAI_API_KEY.*azure_ad_token_provider"):
        azure(frame(), "other {q}", provider_options={"api_version": VERSION})
    assert sim.count == 2


def test_the_responses_api_and_reasoning_effort_on_azure(azure, sim):
    out = azure(frame(), "{q}", api="responses", reasoning_effort="low", usage=True)
    assert {r.path for r in sim.requests} == {"/openai/responses"}
    assert sim.requests[0].body["model"] == "my-deployment" and out["response_reasoning_tokens"].tolist() == [8, 8]


def test_batch_mode_goes_through_azures_batch_api(azure, sim):
    out = azure(frame(3), "Judge {q}", output=Verdict, mode="batch", poll_interval=0.05)
    assert out["verdict_error"].isna().all() and out.attrs["llmframe"]["mode"] == "batch"
    (created,) = sim.batches.created
    assert created.vendor == "azure" and created.requests == 3
    lines = sim.batches.requests(created.id)
    assert all(line["model"] == "my-deployment" for line in lines)
    responses = azure(frame(3), "Judge {q}", output=Verdict, mode="batch", poll_interval=0.05, api="responses")
    assert responses[["label", "score"]].equals(out[["label", "score"]])
    assert "input" in sim.batches.requests(sim.batches.created[-1].id)[0]


def test_the_endpoint_is_in_the_cache_key(azure, sim, monkeypatch):
    azure(frame(), "{q}")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", sim.azure_endpoint + "/")  # the same endpoint, spelled otherwise
    again = azure(frame(), "{q}")
    assert again.attrs["llmframe"]["cached"] == 2 and sim.count == 2
