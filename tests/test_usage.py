"""Usage columns, prices (genai-prices and prices= overrides), cost in the report, the budget guard."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import genai_prices
import pandas as pd
import pytest

from llmframe import constants
from llmframe.cost import prices as prices_module
from llmframe.errors import BudgetExceeded, ConfigError
from llmframe.cost.prices import Pricer
from llmframe.providers import resolve
from llmframe.plan.request import Response
from llmframe.testing.faults import Faults

# $1 per input token, $2 per output token, $0.5 per cached input token: costs are checked by hand.
PRICED = "openai:priced-model"
PRICES = {PRICED: {"input_mtok": 1e6, "output_mtok": 2e6, "cache_read_mtok": 5e5}}
ANSWER = "0123456789ab"  # 12 characters: the simulator counts 3 output tokens


@pytest.fixture
def answering(sim):
    sim.answer = lambda body: ANSWER
    return sim


def frame(n: int) -> pd.DataFrame:
    # 8 characters each: the simulator counts 2 input tokens
    return pd.DataFrame({"q": [f"qqqq{i:04d}" for i in range(n)]})


def test_usage_columns_and_report_by_hand(gen, answering):
    df = pd.concat([frame(3), frame(1)], ignore_index=True)  # row 3 repeats row 0
    out = gen(df, "{q}", model=PRICED, prices=PRICES, usage=True, output="a")
    assert list(out.columns) == ["q", "a", "a_input_tokens", "a_output_tokens", "a_cached_input_tokens",
                                 "a_cache_write_tokens", "a_reasoning_tokens", "a_cost", "a_cached", "a_latency_s",
                                 "a_finish_reason",
                                 "a_error"]
    assert out["a_reasoning_tokens"].tolist() == [0, 0, 0, 0]  # no reasoning model
    assert out["a_input_tokens"].tolist() == [2, 2, 2, 2]
    assert out["a_output_tokens"].tolist() == [3, 3, 3, 3]
    assert out["a_cost"].tolist() == [8.0, 8.0, 8.0, 8.0]  # 2 x $1 + 3 x $2
    assert out["a_cached"].tolist() == [False, False, False, True]  # row 3 shared row 0's request
    assert out["a_finish_reason"].tolist() == ["stop"] * 4
    assert (out["a_latency_s"] > 0).all() and str(out["a_cost"].dtype) == "Float64"
    report = out.attrs["llmframe"]
    assert (report["cost"], report["cost_saved_by_cache"], report["cost_without_cache"]) == (24.0, 8.0, 32.0)
    assert report["price"]["source"] == "prices=" and report["price"]["input_mtok"] == 1e6

    again = gen(df, "{q}", model=PRICED, prices=PRICES, usage=True, output="a")
    report = again.attrs["llmframe"]
    assert (report["cost"], report["cost_saved_by_cache"], report["cost_without_cache"]) == (0.0, 32.0, 32.0)
    assert again["a_cached"].all() and again["a_cost"].tolist() == [8.0] * 4
    # A cached row reports the latency recorded when it was paid.
    assert again["a_latency_s"].tolist() == pytest.approx(out["a_latency_s"].tolist(), abs=1e-4)
    assert answering.count == 3


def test_failed_and_skipped_rows_have_no_usage(gen, sim):
    sim.faults = Faults(error_rates={400: 1.0})
    df = pd.DataFrame({"q": ["a", None]})
    out = gen(df, "{q}", model=PRICED, prices=PRICES, usage=True)
    assert out[["response_input_tokens", "response_cost", "response_cached", "response_latency_s"]].isna().all().all()
    assert out.attrs["llmframe"]["cost"] == 0.0


def test_unknown_model_costs_none_with_one_warning(gen, answering, monkeypatch):
    monkeypatch.setattr(prices_module, "_WARNED", set())
    with pytest.warns(UserWarning, match="no price known for 'openai:sim-model'"):
        out = gen(frame(2), "{q}", usage=True)
    assert out["response_cost"].isna().all()
    assert out.attrs["llmframe"]["cost"] is None and out.attrs["llmframe"]["price"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second run does not warn again
        gen(frame(2), "{q}", usage=True)


def test_real_model_names_are_priced_from_genai_prices(gen, answering):
    """The simulator answers any model name; the price comes from genai-prices' bundled data."""
    out = gen(frame(2), "{q}", model="openai:gpt-4o-mini", usage=True)
    expected = genai_prices.calc_price(genai_prices.Usage(input_tokens=2, output_tokens=3), "gpt-4o-mini",
                                       provider_id="openai")
    assert out["response_cost"].tolist() == pytest.approx([float(expected.total_price)] * 2)
    assert out.attrs["llmframe"]["price"]["source"] == "genai-prices"


@pytest.mark.parametrize("model", ["openai:gpt-4o-mini", "gemini:gemini-2.5-flash", "anthropic:claude-haiku-4-5",
                                   "anthropic:claude-sonnet-4-5"])
@pytest.mark.parametrize("batch", [False, True])
def test_pricer_agrees_with_genai_prices(model, batch):
    """The vectorised arithmetic matches genai-prices' own calculation, tiers, cache reads and batch included."""
    provider, name = model.split(":")
    pricer = Pricer(model, batch=batch, price_id=resolve(model).price_id)  # the price id its provider declares
    assert pricer.known
    context = {"processing": "batch"} if batch else None
    for inp, out, cached in [(1000, 200, 0), (300_000, 1000, 100_000), (5, 0, 5)]:
        usage = genai_prices.Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached)
        expected = genai_prices.calc_price(usage, name, provider_id={"gemini": "google"}.get(provider, provider),
                                           price_context=context)
        assert pricer.cost(inp, out, cached) == pytest.approx(float(expected.total_price), rel=1e-9)
        assert pricer.costs([inp], [out], [cached])[0] == pytest.approx(float(expected.total_price), rel=1e-9)


def test_batch_prices_are_lower():
    for model in ("openai:gpt-4o-mini", "gemini:gemini-2.5-flash", "anthropic:claude-haiku-4-5"):
        price_id = resolve(model).price_id
        assert Pricer(model, batch=True, price_id=price_id).cost(1000, 1000) < \
            Pricer(model, price_id=price_id).cost(1000, 1000)
    overrides = {"openai:x": {"input_mtok": 2.0, "output_mtok": 4.0, "batch_input_mtok": 1.0}}
    assert Pricer("openai:x", prices=overrides, batch=True).cost(1e6, 1e6) == 5.0  # batch input, standard output


def test_cached_input_tokens_are_billed_at_the_cache_price():
    pricer = Pricer(PRICED, prices=PRICES)
    assert pricer.cost(10, 1, cached_input_tokens=4) == 6 * 1 + 4 * 0.5 + 1 * 2
    no_cache_price = Pricer("openai:y", prices={"openai:y": {"input_mtok": 1e6, "output_mtok": 0}})
    assert no_cache_price.cost(10, 0, cached_input_tokens=4) == 10.0  # no discount listed: billed in full


def test_response_cache_round_trip_keeps_latency_and_cached_tokens():
    response = Response("hi", 5, 2, "stop", cached_input_tokens=3, latency=0.123456)
    back = Response.many_from_cache([response.to_cache("openai:m", 1.0)])[0]
    assert (back.text, back.input_tokens, back.cached_input_tokens, back.latency, back.cached) == \
        ("hi", 5, 3, 0.1235, True)
    old = Response.many_from_cache(['["hi",5,2,"stop","openai:m",1.0]'])[0]  # written before latency existed
    assert old.latency is None and old.cached_input_tokens == 0


@pytest.mark.parametrize("bad", [
    {"openai:x": {"input_mtok": 1}},
    {"openai:x": {"input_mtok": 1, "output_mtok": -1}},
    {"openai:x": {"input_mtok": 1, "output_mtok": 1, "per_call": 1}},
    {"no-provider": {"input_mtok": 1, "output_mtok": 1}},
    ["openai:x"],
])
def test_bad_prices_fail_before_sending(gen, sim, bad):
    with pytest.raises(ConfigError, match="prices"):
        gen(frame(1), "{q}", prices=bad)
    assert sim.count == 0


def test_budget_stops_mid_run_and_keeps_finished_answers(gen, answering):
    """Estimate per request: 2 input tokens + max_tokens 10 at $2 = $22; real cost $8.

    The guard waits for in-flight requests' real cost before refusing, so it admits while
    spent + reserved + 22 <= 50: four requests are answered ($32), the rest are not sent.
    """
    df = frame(10)
    with pytest.raises(BudgetExceeded) as caught:
        gen(df, "{q}", model=PRICED, prices=PRICES, max_tokens=10, max_cost=50, max_concurrency=1, usage=True)
    out, report = caught.value.result, caught.value.report
    assert out["response"].notna().sum() == 4 and answering.count == 4
    assert out["response_error"].dropna().str.startswith("not sent: the budget max_cost=50").all()
    assert report["budget"] == {"max_cost": 50, "spent": 32.0, "stopped": True, "rows_not_sent": 6}
    assert report["cost"] == 32.0 <= 50 and report["requests_sent"] == 4
    assert "6 of 10 rows were not sent" in str(caught.value)

    # A larger budget sends only the rest: the four answers come from the cache.
    out = gen(df, "{q}", model=PRICED, prices=PRICES, max_tokens=10, max_cost=1000, usage=True)
    assert out["response"].notna().all() and answering.count == 10
    assert out.attrs["llmframe"]["cost"] == 48.0 and out.attrs["llmframe"]["budget"]["stopped"] is False


def test_budget_still_serves_cached_rows_after_it_stops(gen, answering, monkeypatch):
    monkeypatch.setattr(constants, "CHUNK_SIZE", 2)  # the cached rows lie in chunks after the stop
    df = frame(6)
    gen(df.iloc[3:], "{q}", model=PRICED, prices=PRICES, max_tokens=3)  # rows 3..5 cached
    with pytest.raises(BudgetExceeded) as caught:
        gen(df, "{q}", model=PRICED, prices=PRICES, max_tokens=3, max_cost=16, max_concurrency=1)
    out = caught.value.result
    assert out["response"].notna().tolist() == [True, True, False, True, True, True]


def test_budget_needs_a_price(gen, sim):
    with pytest.raises(ConfigError, match="max_cost needs a price for 'openai:sim-model'"):
        gen(frame(1), "{q}", max_cost=1.0)
    with pytest.raises(ConfigError, match="max_cost must be a number > 0"):
        gen(frame(1), "{q}", model=PRICED, prices=PRICES, max_cost=-1)
    assert sim.count == 0


def test_progress_bar_shows_cost(gen, answering, capsys):
    gen(frame(3), "{q}", model=PRICED, prices=PRICES, progress=True)
    err = capsys.readouterr().err
    assert "cost=$24.0000" in err and "tokens=15" in err


def test_retry_failed_keeps_usage_columns(gen, sim):
    sim.faults = Faults(error_rates={400: 1.0})
    out = gen(frame(2), "{q}", model=PRICED, prices=PRICES, usage=True)
    sim.reset()
    sim.answer = lambda body: ANSWER
    again = out.llm.retry_failed()
    assert again["response"].notna().all() and not math.isnan(again["response_cost"].sum())


def test_series_usage_gives_a_frame(gen, answering):
    out = gen(pd.Series(["qqqq0001", "qqqq0002"], name="q"), "{}", model=PRICED, prices=PRICES, usage=True)
    assert list(out.columns) == ["response", "response_input_tokens", "response_output_tokens",
                                 "response_cached_input_tokens", "response_cache_write_tokens",
                                 "response_reasoning_tokens", "response_cost",
                                 "response_cached", "response_latency_s", "response_finish_reason"]
    assert out["response_cost"].tolist() == [8.0, 8.0]


def test_prices_load_only_where_a_cost_is_asked_for(gen, answering):
    out = gen(frame(2), "{q}", model="openai:gpt-4o-mini")
    assert "cost" not in out.attrs["llmframe"] and "response_cost" not in out
    code = ("import sys, pandas as pd, llmframe; from llmframe.faces.planning import plan; "
            "from llmframe.faces.frames import rows_of; "
            "plan(rows_of(pd.DataFrame({'q': ['a']})), '{q}', model='openai:gpt-4o-mini', api_key='k'); "
            "print('genai_prices' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def billed_by_prompt(sim) -> dict[str, tuple[int, int]]:
    """(input, output) tokens the simulator billed per row, over all of the row's attempts."""
    billed: dict[str, tuple[int, int]] = {}
    for logged in sim.requests:  # a re-ask's last message is the correction: the row is its first message
        prompt = logged.body["messages"][0]["content"]
        inputs, outputs = billed.get(prompt, (0, 0))
        billed[prompt] = (inputs + logged.billed[0], outputs + logged.billed[1])
    return billed


def first_ask_invalid(body) -> str:
    """An answer that breaks the schema when first asked, a valid one when asked again."""
    reasked = body["messages"][-1]["role"] == "user" and "did not match" in body["messages"][-1]["content"]
    return '{"label": "fixed after a re-ask"}' if reasked else '{"label": 5}'


def test_reasked_answers_are_billed_in_usage_report_cost_budget_and_progress(gen, sim, capsys):
    """The provider bills every answer, the rejected ones too: each reaches every count of the run."""
    from pydantic import BaseModel

    class Label(BaseModel):
        label: str

    sim.answer = first_ask_invalid
    df = frame(3)
    out = gen(df, "{q}", model=PRICED, prices=PRICES, usage=True, output=Label, max_cost=10_000, progress=True)
    assert out["label"].tolist() == ["fixed after a re-ask"] * 3 and sim.count == 6
    billed = billed_by_prompt(sim)
    assert [(i, o) for i, o in zip(out["label_input_tokens"], out["label_output_tokens"])] == [billed[q] for q in df["q"]]
    inputs, outputs = sum(i for i, _ in billed.values()), sum(o for _, o in billed.values())
    report = out.attrs["llmframe"]
    assert (report["input_tokens"], report["output_tokens"]) == (inputs, outputs)
    cost = inputs * 1.0 + outputs * 2.0
    assert report["cost"] == cost == out["label_cost"].sum() and report["budget"]["spent"] == cost
    assert f"tokens={inputs + outputs}" in capsys.readouterr().err


def test_a_row_whose_answers_were_all_rejected_is_billed_for_them(gen, sim):
    from pydantic import BaseModel

    class Label(BaseModel):
        label: str

    sim.answer = lambda body: '{"label": 5}'
    out = gen(frame(2), "{q}", model=PRICED, prices=PRICES, usage=True, output=Label, invalid_retries=1,
              max_cost=10_000)
    assert out["label"].isna().all() and out["label_error"].str.endswith("(2 answers)").all() and sim.count == 4
    billed = billed_by_prompt(sim)
    inputs, outputs = sum(i for i, _ in billed.values()), sum(o for _, o in billed.values())
    report = out.attrs["llmframe"]
    assert (report["input_tokens"], report["output_tokens"], report["failed"]) == (inputs, outputs, 2)
    assert report["cost"] == inputs + 2.0 * outputs == report["budget"]["spent"]
    assert out["label_input_tokens"].sum() == inputs and out["label_cost"].sum() == report["cost"]


def test_malformed_replies_that_report_usage_are_billed(gen, sim):
    sim.faults = Faults(retyped_rate=1.0, retyped={"choices.0.message.content": 7})
    out = gen(frame(2), "{q}", model=PRICED, prices=PRICES, max_attempts=2)
    assert out["response"].isna().all() and sim.count == 4
    report = out.attrs["llmframe"]
    assert report["input_tokens"] == sum(r.billed[0] for r in sim.requests) > 0
    assert report["output_tokens"] == sum(r.billed[1] for r in sim.requests) > 0


def test_replies_without_choices_that_report_usage_are_billed(gen, sim):
    sim.faults = Faults(empty_choices_rate=1.0)
    out = gen(frame(2), "{q}", model=PRICED, prices=PRICES, max_attempts=2)
    assert out["response_error"].str.contains("no choices").all() and sim.count == 4
    report = out.attrs["llmframe"]
    assert report["input_tokens"] == sum(r.billed[0] for r in sim.requests) > 0
    assert report["cost"] == report["input_tokens"] + 2.0 * report["output_tokens"]
