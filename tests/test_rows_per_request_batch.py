"""rows_per_request=k in batch mode: one batch line per pack, answers mapped back per row by item id, the rows a
pack left out asked again alone online (in the same run), each row cached under its own key."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import BaseModel

from llmframe.testing import BatchSettings
from llmframe.testing.faults import Faults

PROVIDERS = ["openai", "anthropic", "gemini", "mistral"]


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review {i}: {'great' if i % 3 else 'broken'} item" for i in range(n)]})


@pytest.fixture
def batch(sim):
    sim.batches.settings = BatchSettings(seconds=0.1)
    urls = {"openai": sim.base_url, "anthropic": sim.anthropic_base_url, "gemini": sim.gemini_base_url,
            "mistral": sim.mistral_base_url}

    def call(df, provider="openai", **kwargs):
        kwargs.setdefault("model", f"{provider}:sim-model")
        kwargs.setdefault("base_url", urls[provider])
        kwargs.setdefault("api_key", sim.api_key)
        kwargs.setdefault("progress", False)
        kwargs.setdefault("poll_interval", 0.02)
        return df.llm.generate("Sentiment, one word: {review}", **kwargs)

    return call


@pytest.mark.parametrize("provider", PROVIDERS)
def test_packed_lines_answer_each_row_as_alone(batch, sim, provider):
    alone = batch(reviews(25), provider, mode="online", cache=False)
    sim.reset()
    sim.batches.settings = BatchSettings(seconds=0.1)
    out = batch(reviews(25), provider, mode="batch", rows_per_request=10, usage=True)
    assert [c.requests for c in sim.batches.created] == [3]  # 10 + 10 + 5 rows in three lines
    assert sim.count == 0  # nothing asked online
    assert out["response"].tolist() == alone["response"].tolist()
    report = out.llm.report
    assert report["mode"] == "batch"
    assert report["rows_per_request"] == {"size": 10, "packed_requests": 3, "rows_asked_alone": 0}
    assert (out["response_input_tokens"] > 0).all()
    again = batch(reviews(25), provider, mode="batch", rows_per_request=10)
    assert again.llm.report["cached"] == 25 and len(sim.batches.created) == 1  # each row under its own key
    online = batch(reviews(25), provider, mode="online", rows_per_request=10)
    assert online.llm.report["cached"] == 25 and sim.count == 0  # the same keys as online packing


def test_dropped_and_doubled_items_are_asked_alone_online(batch, sim):
    alone = batch(reviews(40), mode="online", cache=False)
    sim.reset()
    sim.batches.settings = BatchSettings(seconds=0.1)
    sim.faults = Faults(pack_drop_rate=0.15, pack_duplicate_rate=0.15, seed=3)
    out = batch(reviews(40), mode="batch", rows_per_request=8, usage=True)
    assert out["response"].tolist() == alone["response"].tolist()  # never shifted onto another row
    entry = out.llm.report["rows_per_request"]
    assert entry["packed_requests"] == 5 and entry["rows_asked_alone"] > 0
    assert sim.count == entry["rows_asked_alone"]  # each one alone, through the online API
    assert [e.body["messages"][-1]["content"].startswith("Sentiment") for e in sim.requests] == [True] * sim.count
    assert out["response_error"].isna().all()


class Verdict(BaseModel):
    label: str


def test_structured_items_in_a_batch(batch, sim):
    out = batch(reviews(12), mode="batch", rows_per_request=5, output=Verdict)
    assert out["label"].notna().all() and sim.count == 0
    assert [c.requests for c in sim.batches.created] == [3]


def test_an_interrupted_submit_reattaches_with_the_same_packs(batch, sim, tmp_path):
    """The same call submitted again finds its job (the key file lists the rows; the packs are made the same)."""
    df = reviews(30)
    job = df.llm.submit("Sentiment, one word: {review}", model="openai:sim-model", base_url=sim.base_url,
                        api_key=sim.api_key, rows_per_request=7, poll_interval=0.02, progress=False)
    again = df.llm.submit("Sentiment, one word: {review}", model="openai:sim-model", base_url=sim.base_url,
                          api_key=sim.api_key, rows_per_request=7, poll_interval=0.02, progress=False)
    out = again.result() if hasattr(again, "result") else again
    assert len(sim.batches.created) == 1 and sim.batches.created[0].requests == 5  # 7 * 4 + 2 rows
    assert out["response"].notna().all()
    assert job.result()["response"].tolist() == out["response"].tolist()
