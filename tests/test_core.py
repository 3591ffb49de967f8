"""The core's three steps: plan (frozen, pure) -> execute (returns an Outcome) -> collect (plan + outcome)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from llmframe.cost.budget import Budget
from llmframe.cost.meter import CostMeter
from llmframe.cost.prices import Pricer
from llmframe.engine.loop import run_sync
from llmframe.engine.outcome import Outcome
from llmframe.engine.run import open_provider, start
from llmframe.errors import ConfigError
from llmframe.faces.frames import rows_of, to_frame
from llmframe.faces.planning import plan
from llmframe.plan.request import Request, Response
from llmframe.providers import provider_class

MODEL = "openai:sim-model"


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"question {i}" for i in range(n)]})


def test_planning_opens_no_store_and_makes_no_provider(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cache_dir = tmp_path / "not-yet"
    planned = plan(rows_of(frame(3)), "{q}", model=MODEL, cache_dir=str(cache_dir))  # no key: no provider is made yet
    assert not cache_dir.exists(), "planning opened the cache store"
    assert len(planned.keys) == 3 and planned.provider.name == "openai"
    with pytest.raises(dataclasses.FrozenInstanceError):
        planned.cache = False  # type: ignore[misc]
    with pytest.raises(ConfigError, match="no API key for openai"):
        start(planned)  # the engine's way in makes the provider: a missing key fails there, before anything is sent
    assert not cache_dir.exists()


def test_the_engine_returns_an_outcome_and_the_same_plan_runs_again(sim):
    planned = plan(rows_of(frame(4)), "{q}", model=MODEL, base_url=sim.base_url, api_key=sim.api_key, progress=False)
    before = (planned.keys[:], planned.weights.tolist(), planned.row_to_key.tolist())
    first = run_sync(start(planned))
    assert isinstance(first, Outcome) and first.counters.attempts == 4 and first.seconds > 0
    assert first.answers.done.all() and not first.answers.cached.any() and first.job_id is None
    again = run_sync(start(planned))  # nothing of the first execution was written onto the plan
    assert again.answers.cached.all() and again.counters.attempts == 0 and sim.count == 4
    assert (planned.keys[:], planned.weights.tolist(), planned.row_to_key.tolist()) == before
    out = to_frame(frame(4), planned, first)
    assert out["response"].notna().all() and out.attrs["llmframe"]["requests_sent"] == 4
    assert to_frame(frame(4), planned, again).attrs["llmframe"]["cached"] == 4


@pytest.mark.parametrize("name, variable", [("openai", "OPENAI_BASE_URL"), ("anthropic", "ANTHROPIC_BASE_URL"),
                                            ("gemini", "GOOGLE_GEMINI_BASE_URL")])
def test_a_plans_endpoint_is_the_one_its_provider_sends_to(name, variable, monkeypatch):
    kind = provider_class(name)

    def made(base_url):
        return kind("m", api_key="k", base_url=base_url, max_concurrency=1, timeout=1.0).endpoint

    monkeypatch.delenv(variable, raising=False)
    for base_url in (None, "http://127.0.0.1:8000/v1/", "HTTPS://Elsewhere.example/v1"):
        assert kind.endpoint_for(base_url) == made(base_url), base_url
    monkeypatch.setenv(variable, "http://127.0.0.1:8001/v1")
    assert kind.endpoint_for(None) == made(None) == "http://127.0.0.1:8001/v1"
    assert kind.endpoint_for("http://127.0.0.1:8002") == made("http://127.0.0.1:8002")


def test_a_provider_that_resolves_no_endpoint_keys_none():
    from llmframe.providers.base import Provider

    class Plain(Provider):  # a plugin that declares no endpoint of its own: keyed without one, as resolved_url says
        name = "plain"

        async def complete(self, request):
            return Response("x")

    assert Plain.endpoint_for("http://127.0.0.1:9") is None
    assert Plain("m", base_url="http://127.0.0.1:9", max_concurrency=1, timeout=1.0).endpoint is None


def test_the_provider_is_made_from_the_plan_with_its_arguments(sim):
    planned = plan(rows_of(frame(1)), "{q}", model=MODEL, base_url=sim.base_url, api_key=sim.api_key, max_concurrency=3,
                   timeout=7.0)
    provider = open_provider(planned)
    assert (provider.model, provider.base_url, provider.max_concurrency, provider.timeout) == (
        "sim-model", sim.base_url, 3, 7.0)
    assert provider.endpoint == planned.provider.endpoint


def test_meters_over_one_budget_share_its_cap():
    prices = {"openai:m": {"input_mtok": 1_000_000, "output_mtok": 0}}  # a dollar per input token
    budget = Budget(10.0)
    one, two = (CostMeter(Pricer("openai:m", prices=prices), budget) for _ in range(2))
    request = Request("k", [{"role": "user", "content": "x" * 16}], {})  # 4 tokens by the estimate, $4

    async def reserve_all():
        return [await one.reserve(0, request), await two.reserve(0, request)]

    assert run_sync(reserve_all) == [True, True] and budget.reserved == 8.0
    assert one.settle(0, Response("ok", 3, 0)) == 3.0 and budget.spent == 3.0
    two.release()  # cut short: its reservation counts at the estimate
    assert budget.spent == 7.0 and budget.in_flight == 0

    async def over():
        return await one.reserve(1, request)

    assert run_sync(over) is False and one.stopped and two.stopped, "the cap is the budget's, for every meter on it"
