"""estimate(): a dry run that sends nothing, needs no key, and counts what a run would send and cost."""

from __future__ import annotations

import pandas as pd
import pytest

from llmframe.cost import estimate as estimate_module
from llmframe.cost import prices as prices_module
from llmframe.errors import BudgetExceeded
from llmframe.plan.request import Request, Response
from llmframe.providers import openai as openai_module
from llmframe.providers.base import Provider
from llmframe.errors import ConfigError, TemplateError

PRICED = "openai:priced-model"
PRICES = {PRICED: {"input_mtok": 1e6, "output_mtok": 2e6}}  # $1 per input token, $2 per output token


def frame() -> pd.DataFrame:
    # 8, 8 and 16 characters: 2, 2 and 4 input tokens by the documented approximation; row 2 repeats row 0
    return pd.DataFrame({"q": ["abcdefgh", "ijklmnop", "abcdefgh", "0123456789abcdef", None]})


def test_estimate_by_hand_and_sends_nothing(sim, gen):
    df = frame()
    est = df.llm.estimate("{q}", model=PRICED, prices=PRICES, max_tokens=10, base_url=sim.base_url)
    assert (est.rows, est.skipped, est.requests, est.uncached_requests, est.uncached_rows) == (5, 1, 3, 3, 4)
    assert est.input_tokens == 2 + 2 + 4 and est.tokenizer == estimate_module.APPROXIMATION
    assert est.output_tokens == (3, 30)
    assert est.cost == (8 * 1 + 3 * 2, 8 * 1 + 30 * 2)
    assert est.samples[0] == [{"role": "user", "content": "abcdefgh"}] and len(est.samples) == 3
    assert sim.count == 0
    assert "nothing was sent" in repr(est) and "[user] abcdefgh" in repr(est)

    gen(df.iloc[:2], "{q}", model=PRICED, prices=PRICES, max_tokens=10)  # rows 0 and 1 now cached (and row 2)
    est = df.llm.estimate("{q}", model=PRICED, prices=PRICES, max_tokens=10, base_url=sim.base_url)
    assert (est.uncached_requests, est.uncached_rows, est.input_tokens) == (1, 1, 4)
    assert est.cost == (4 + 2, 4 + 20)
    assert est.to_dict()["cost"] == (6, 24)


def test_estimate_batch_mode_uses_batch_prices():
    df = frame()
    online = df.llm.estimate("{q}", model="openai:gpt-4o-mini", max_tokens=10)
    batch = df.llm.estimate("{q}", model="openai:gpt-4o-mini", max_tokens=10, mode="batch")
    assert batch.cost[1] < online.cost[1] and batch.price["batch"] is True
    with pytest.raises(ConfigError, match="mode must be one of"):
        df.llm.estimate("{q}", model="openai:gpt-4o-mini", mode="overnight")


def test_estimate_unknown_price_and_default_output_limits(monkeypatch):
    monkeypatch.setattr(prices_module, "_WARNED", set())
    df = frame()
    with pytest.warns(UserWarning, match="no price known for 'openai:sim-model'"):
        est = df.llm.estimate("{q}", model="openai:sim-model")
    assert est.cost is None and "unknown" in repr(est)
    assert est.output_tokens[1] == 3 * 256 and any("max_tokens is not set" in n for n in est.notes)
    anthropic = df.llm.estimate("{q}", model="anthropic:claude-haiku-4-5")
    assert anthropic.output_tokens[1] == 3 * 1024  # what llmframe sends Anthropic when max_tokens is not set


def test_estimate_validates_like_generate():
    with pytest.raises(TemplateError):
        frame().llm.estimate("{missing}", model=PRICED)
    with pytest.raises(ConfigError):
        frame().llm.estimate("{q}", model=PRICED, temperature=5)


def test_tiktoken_counts_when_an_encoding_loads(monkeypatch):
    """tiktoken's vocabularies are downloaded on first use, which this machine cannot do, so the exact
    path is tested with a stand-in encoding object (the only fake here: it replaces a download)."""

    class Encoding:
        name = "stand-in"

        def encode_ordinary_batch(self, texts):
            return [t.split("e") for t in texts]

    openai_module._encoding.cache_clear()
    monkeypatch.setattr(openai_module, "_encoding", lambda model: Encoding())
    est = frame().llm.estimate("{q}", model="openai:gpt-4o-mini", system="be brief")
    # per request: 2 messages x 3 framing tokens + 3 for the reply + 3 pieces of "be brief" + the row's pieces
    assert est.tokenizer == "tiktoken:stand-in"
    assert est.input_tokens == 3 * (6 + 3 + 3) + 2 + 1 + 2
    other = frame().llm.estimate("{q}", model="gemini:gemini-2.5-flash")
    assert other.tokenizer == estimate_module.APPROXIMATION  # only OpenAI models use tiktoken


def test_tiktoken_is_optional():
    openai_module._encoding.cache_clear()
    try:
        # Not installed, or installed without its downloaded vocabularies: None either way, never an error.
        found = openai_module._encoding("gpt-4o-mini")
        assert found is None or found.name == "o200k_base"
    finally:
        openai_module._encoding.cache_clear()


def test_series_estimate(sim):
    est = pd.Series(["abcdefgh", "ijkl"]).llm.estimate("{}", model=PRICED, prices=PRICES, max_tokens=1)
    assert (est.rows, est.input_tokens, est.cost) == (2, 3, (3 + 2 * 2, 3 + 2 * 2))
    assert sim.count == 0


class Terse(Provider):
    """A provider from outside llmframe: its output limit and token counter are capabilities it declares."""

    name = "terse"
    default_max_tokens = 7  # what it sends when a call sets no max_tokens

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self.asked = 0

    @classmethod
    def token_counter(cls, model: str):
        return (lambda messages: 10 * len(messages)), f"terse:{model}"

    async def complete(self, request: Request) -> Response:
        self.asked += 1
        return Response(text="ok", input_tokens=len(request.messages[-1]["content"]) // 4, output_tokens=7)


def test_a_plugin_provider_declares_how_it_is_estimated_with_no_edit_to_llmframe():
    provider = Terse("t1")
    prices = {"terse:t1": {"input_mtok": 1e6, "output_mtok": 1e6}}  # $1 a token
    est = frame().llm.estimate("{q}", model=provider, prices=prices)
    assert est.tokenizer == "terse:t1" and est.input_tokens == 3 * 10  # one message per request
    assert est.output_tokens == (3 * 1, 3 * 7)  # its own limit, not the 256-token guess
    assert est.cost == (3 * (10 + 1), 3 * (10 + 7)) and provider.asked == 0
    assert not any("max_tokens is not set" in n for n in est.notes)  # its limit is firm: it always sends one
    assert frame().llm.estimate("{q}", model=provider, prices=prices, max_tokens=2).output_tokens == (3, 6)
    # max_cost reserves each request at the same limit before it is sent: $9, $9 and $11 (input chars / 4, plus 7
    # out; with the 256-token guess, $258 each and nothing would be sent). $20 fits the first two, not the third.
    with pytest.raises(BudgetExceeded) as stopped:
        frame().llm.generate("{q}", model=provider, prices=prices, max_cost=20, max_concurrency=1, progress=False)
    assert provider.asked == 2 and stopped.value.report["cost"] == 18
