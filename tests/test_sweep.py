"""Sweeps over models x parameters x templates x repeats, against the simulator's three dialects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llmframe import scorers
from llmframe.errors import BudgetExceeded, ConfigError
from llmframe.apps.sweep import SweepResult
from llmframe.testing.simulator import SimulatedError

OPENAI, ANTHROPIC, GEMINI = "openai:gpt-4o-mini", "anthropic:claude-haiku-4-5", "gemini:gemini-2.5-flash"
# Round prices, so every cost below is checked by hand: USD per token.
PRICES = {OPENAI: {"input_mtok": 1e6, "output_mtok": 2e6}, ANTHROPIC: {"input_mtok": 10e6, "output_mtok": 20e6},
          GEMINI: {"input_mtok": 1e6, "output_mtok": 2e6}}


@pytest.fixture
def providers(sim, monkeypatch):
    """Every provider's SDK pointed at the simulator through its own environment variables."""
    for name, value in {"OPENAI_BASE_URL": sim.base_url, "ANTHROPIC_BASE_URL": sim.anthropic_base_url,
                        "GOOGLE_GEMINI_BASE_URL": sim.gemini_base_url, "OPENAI_API_KEY": "k",
                        "ANTHROPIC_API_KEY": "k", "GEMINI_API_KEY": "k"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    return sim


def capitals() -> pd.DataFrame:
    # Each question is 8 characters (2 input tokens in the simulator); each answer 4 or 5 (1 output token).
    return pd.DataFrame({"q": ["France??", "Italy???", "Spain???", "Peru????"],
                         "gold": ["Paris", "Rome", "Madrid", "Lima"]})


def knows_three_of_four(body: dict) -> str:
    """gpt-4o-mini misses Peru; claude-haiku knows only France; gemini knows none."""
    question = body["messages"][-1]["content"]
    model = body.get("model", "")
    right = {"France??": "Paris", "Italy???": "Rome", "Spain???": "Madrid", "Peru????": "Lima"}
    known = {"gpt-4o-mini": {"France??", "Italy???", "Spain???"}, "claude-haiku-4-5": {"France??"}}
    for stem, questions in known.items():
        if stem in model:
            return right[question] if question in questions else "Oslo"
    return "Oslo"


def test_sweep_two_providers_summary_by_hand(providers):
    providers.answer = knows_three_of_four
    res = capitals().llm.sweep("{q}", models=[OPENAI, ANTHROPIC], params={"temperature": [0, 0.7]}, output="answer",
                               score=lambda row: row.answer.strip().lower() == row.gold.lower(), prices=PRICES)
    table = res.table
    assert len(table) == 4 * 2 * 2
    assert {"model", "template", "temperature", "repeat", "score", "answer_cost", "answer_latency_s"} <= set(table)
    assert {r.path for r in providers.requests} == {"/v1/chat/completions", "/v1/messages"}
    assert providers.count == 16

    summary = res.summary().set_index(["model", "temperature"])
    openai = summary.loc[(OPENAI, 0)]
    # scores 1, 1, 1, 0: mean 0.75, sample sd 0.5, standard error 0.25, half-width 1.96 x 0.25 = 0.49
    assert openai["score_mean"] == 0.75
    assert openai["score_low"] == pytest.approx(0.26) and openai["score_high"] == 1.0  # 1.24 kept within 0..1
    assert (openai["n"], openai["failures"], openai["input_tokens"], openai["output_tokens"]) == (4, 0, 8, 4)
    assert openai["cost"] == 4 * (2 * 1 + 1 * 2) == openai["cost_paid"]
    claude = summary.loc[(ANTHROPIC, 0.7)]
    # scores 1, 0, 0, 0: mean 0.25, sd 0.5, the same half-width: 0.25 - 0.49 is kept at 0
    assert (claude["score_mean"], claude["score_low"], claude["score_high"]) == (0.25, 0.0, pytest.approx(0.74))
    assert claude["cost"] == 4 * (2 * 10 + 1 * 20)
    latency = table[(table.model == OPENAI) & (table.temperature == 0)]["answer_latency_s"].to_numpy(dtype=float)
    assert openai["latency_p50"] == pytest.approx(np.percentile(latency, 50))
    assert openai["latency_p95"] == pytest.approx(np.percentile(latency, 95))
    assert 0 < openai["latency_p50"] <= openai["latency_p95"]

    # A second sweep is served from the cache: same table, nothing paid, nothing sent.
    again = capitals().llm.sweep("{q}", models=[OPENAI, ANTHROPIC], params={"temperature": [0, 0.7]},
                                 output="answer", score=lambda row: row.answer == row.gold, prices=PRICES)
    assert providers.count == 16
    assert again.table["answer_cached"].all()
    assert (again.summary()["cost_paid"] == 0).all() and again.summary()["cost"].tolist() == \
        res.summary()["cost"].tolist()


def test_summary_by_hand_on_a_small_table():
    table = pd.DataFrame({
        "answer": ["a", "b", None, "d", "e"],
        "answer_input_tokens": pd.array([1, 2, None, 4, 5], dtype="Int64"),
        "answer_output_tokens": pd.array([1, 1, None, 1, 1], dtype="Int64"),
        "answer_cost": pd.array([0.5, 0.5, None, 1.0, 2.0], dtype="Float64"),
        "answer_cached": pd.array([False, True, None, False, False], dtype="boolean"),
        "answer_latency_s": pd.array([0.1, 0.2, None, 0.4, 0.3], dtype="Float64"),
        "model": ["m1", "m1", "m1", "m1", "m2"], "template": "t0", "repeat": 0,
        "score": [1.0, 0.5, np.nan, 0.5, 1.0],
    })
    summary = SweepResult(table, output="answer", parameters=[]).summary().set_index("model")
    m1 = summary.loc["m1"]
    assert m1["score_mean"] == pytest.approx(2 / 3)  # (1 + 0.5 + 0.5) / 3: the failed row is not scored
    half = 1.96 * math.sqrt(1 / 12) / math.sqrt(3)  # sample sd of (1, 0.5, 0.5) is sqrt(1/12)
    assert (m1["score_low"], m1["score_high"]) == (pytest.approx(2 / 3 - half), pytest.approx(2 / 3 + half))
    assert (m1["n"], m1["failures"], m1["input_tokens"], m1["output_tokens"]) == (4, 1, 7, 3)
    assert (m1["cost"], m1["cost_paid"]) == (2.0, 1.5)  # row 1 came from the cache
    assert m1["latency_p50"] == pytest.approx(0.2)
    assert m1["latency_p95"] == pytest.approx(0.2 + 0.9 * 0.2)  # numpy's linear interpolation: 1.9 of 2 steps
    m2 = summary.loc["m2"]
    assert m2["score_mean"] == 1.0 and math.isnan(m2["score_low"])  # one score: no interval


def test_templates_and_repeats(providers):
    providers.answer = knows_three_of_four
    res = capitals().llm.sweep({"bare": "{q}", "asked": "Capital of {q}"}, models=OPENAI, repeats=3,
                               output="answer", score=scorers.exact("gold"), prices=PRICES)
    assert len(res.table) == 4 * 2 * 3 and providers.count == 4 * 2 * 3
    assert sorted({r.body["seed"] for r in providers.requests}) == [0, 1, 2]
    summary = res.summary()
    assert summary["template"].tolist() == ["bare", "asked"] and summary["n"].tolist() == [12, 12]
    stops = capitals().llm.sweep("{q}", models=OPENAI, params={"stop": [["\n"], ["."]]}, output="answer",
                                 prices=PRICES).summary()
    assert stops["stop"].tolist() == ['["\\n"]', '["."]'] and stops["n"].tolist() == [4, 4]
    assert summary.loc[summary.template == "bare", "score_mean"].item() == 0.75


def test_configurations_run_concurrently(providers):
    """Each run sends one request at a time, yet all four configurations are in flight together."""
    providers.latency = 0.5
    res = capitals().llm.sweep("{q}", models=[OPENAI, ANTHROPIC, GEMINI, "openai:gpt-4o"], output="answer",
                               max_concurrency=1, prices={**PRICES, "openai:gpt-4o": PRICES[OPENAI]})
    runs: dict[tuple, list[float]] = {}
    for r in providers.requests:
        runs.setdefault((r.path, (r.chat or r.body).get("model")), []).append(r.time)
    assert sorted(map(len, runs.values())) == [4] * 4 and res.table["answer"].notna().all()
    # Each run sends its next request only after the last reply (half a second), so runs one after another
    # would never overlap; here every run still has requests to send when the last of them starts. (Not a
    # window of arrivals: a loaded machine may start the clients a second apart, never the 1.5 s a run lasts.)
    last_start = max(min(times) for times in runs.values())
    assert all(max(times) > last_start for times in runs.values()), runs


def test_budget_covers_the_whole_sweep(providers):
    """Same price for both models: each request is estimated at 2 + 10 x 2 = $22 and costs 2 + 1 x 2 = $4.

    The guard admits while spent + reserved + 22 <= 50, over both runs together: a request is refused
    for good only with nothing in flight, so spending stops between $28 and $50: 8 answers ($32).
    """
    providers.answer = knows_three_of_four
    same = {OPENAI: PRICES[OPENAI], GEMINI: PRICES[OPENAI]}
    with pytest.raises(BudgetExceeded) as caught:
        capitals().llm.sweep("{q}", models=[OPENAI, GEMINI], repeats=2, output="answer", max_tokens=10,
                             max_cost=50, prices=same, score=scorers.exact("gold"))
    res = caught.value.result
    assert isinstance(res, SweepResult) and len(res.table) == 16
    answered = res.table["answer"].notna()
    assert answered.sum() == 8 == providers.count
    assert caught.value.report["budget"]["spent"] == 32.0
    assert res.table.loc[~answered, "answer_error"].str.startswith("not sent: the budget").all()
    assert res.summary()["failures"].sum() == 8

    # Resumed without the cap: the eight answers come from the cache, only the other eight are sent.
    res = capitals().llm.sweep("{q}", models=[OPENAI, GEMINI], repeats=2, output="answer", max_tokens=10,
                               prices=same, score=scorers.exact("gold"))
    assert providers.count == 16 and res.table["answer"].notna().all()
    assert res.table["answer_cached"].sum() == 8


def test_one_configuration_aborting_leaves_the_others(providers):
    def answer(body):
        if "claude" in body["model"]:
            raise SimulatedError(401, "invalid x-api-key")
        return "Paris"

    providers.answer = answer
    res = capitals().llm.sweep("{q}", models=[OPENAI, ANTHROPIC], output="answer", prices=PRICES)
    by_model = res.table.groupby("model")["answer"].count()
    assert by_model[OPENAI] == 4 and by_model[ANTHROPIC] == 0
    assert res.table.loc[res.table.model == ANTHROPIC, "answer_error"].str.contains("RunAborted").all()


def test_a_sweep_warns_once_naming_the_configurations_that_mostly_failed(providers):
    def answer(body):
        if "claude" in body["model"]:
            raise SimulatedError(400, "model not available")
        return "Paris"

    providers.answer = answer
    with pytest.warns(RuntimeWarning) as warned:
        res = capitals().llm.sweep("{q}", models=[OPENAI, ANTHROPIC], params={"temperature": [0, 0.7]},
                                   output="answer", prices=PRICES)
    messages = [str(w.message) for w in warned if w.category is RuntimeWarning]
    assert len(messages) == 1, "one warning for the sweep, not one per configuration"
    assert messages[0].startswith("most rows failed in 2 of 4 runs: "), messages[0]
    for temperature in (0, 0.7):
        assert f"{ANTHROPIC} (template t0, temperature={temperature}, repeat 0): 4 of 4 rows failed (first error: " \
               "HTTP 400: model not available)" in messages[0]
    assert OPENAI not in messages[0] and res.table["answer"].notna().sum() == 8


def test_builtin_scorers():
    table = pd.DataFrame({"answer": ["  Paris. ", "about 1,234.5 km", "I think ROME", "no"],
                          "gold": ["paris", "1234", "Rome", "yes"]})
    assert scorers.exact("gold")(table, "answer").tolist() == [1, 0, 0, 0]
    assert scorers.contains("gold")(table, "answer").tolist() == [1, 0, 1, 0]
    assert scorers.numeric("gold", tol=0.5)(table, "answer").tolist() == [0, 1, 0, 0]
    assert scorers.numeric("gold", rel_tol=1e-4)(table, "answer").tolist() == [0, 0, 0, 0]
    assert scorers.regex(r"\brome\b")(table, "answer").tolist() == [0, 0, 1, 0]
    judge = scorers.judge("{answer}", model=OPENAI)
    assert [judge.parse(t) for t in ("Yes, correct", "0.5", "8", "no")] == [1.0, 0.5, 1.0, 0.0]
    assert math.isnan(judge.parse("maybe"))
    assert scorers.judge("{answer}", model=OPENAI, scale=10).parse("8/10") == 0.8
    with pytest.raises(ConfigError, match="invalid pattern"):
        scorers.regex("(")


def test_llm_judge_scores_and_is_cached(providers):
    def answer(body):
        text = body["messages"][-1]["content"]
        if text.startswith("Grade"):
            return "1" if "Paris" in text else "0"
        return "Paris" if "France" in text else "Oslo"

    providers.answer = answer
    judge = scorers.judge("Grade: is {answer} the capital of {q}? Reply 1 or 0.", model=GEMINI, prices=PRICES)
    res = capitals().llm.sweep("{q}", models=OPENAI, output="answer", score=judge, prices=PRICES)
    assert res.table["score"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert providers.count == 8 and judge.report["requests_sent"] == 4
    capitals().llm.sweep("{q}", models=OPENAI, output="answer", score=judge, prices=PRICES)
    assert providers.count == 8  # the judge's answers came from the cache too


def test_plot_draws_score_against_cost_and_latency(providers):
    import matplotlib

    matplotlib.use("Agg")
    providers.answer = knows_three_of_four
    res = capitals().llm.sweep("{q}", models=[OPENAI, ANTHROPIC], output="answer", score=scorers.exact("gold"),
                               prices=PRICES)
    fig = res.plot()
    axes = fig.get_axes()
    assert [a.get_xlabel() for a in axes] == ["cost (USD)", "latency p50 (s)"]
    xs = sorted(axes[0].lines[0].get_xdata().tolist())
    assert xs == pytest.approx(sorted(res.summary()["cost"].tolist()))
    assert sorted(t.get_text() for t in axes[0].texts) == sorted([OPENAI, ANTHROPIC])  # the one template: not in labels


def test_plot_labels_name_every_setting_that_varies(providers):
    import matplotlib

    matplotlib.use("Agg")
    res = capitals().llm.sweep({"short": "{q}", "long": "Answer: {q}"}, models=OPENAI, output="answer",
                               params={"temperature": [0, 0.7]}, score=scorers.exact("gold"), prices=PRICES)
    labels = sorted(t.get_text() for t in res.plot().get_axes()[1].texts)
    assert labels == sorted(f"{name} {t}" for name in ("short", "long") for t in (0.0, 0.7))


@pytest.mark.parametrize("kwargs, match", [
    ({"models": []}, "models must be"),
    ({"models": OPENAI, "params": {"temperature": 0.5}}, "params must map"),
    ({"models": OPENAI, "score": "exact"}, "score must be"),
    ({"models": OPENAI, "usage": True}, "usage= is set by sweep"),
    ({"models": OPENAI, "repeats": 0}, "repeats must be"),
    ({"models": OPENAI, "score": scorers.exact("nope")}, "no column"),
    ({"models": "openai:sim-model", "max_cost": 1.0}, "max_cost needs a price"),
    ({"models": [OPENAI, "nope:x"]}, "provider"),
])
def test_bad_sweeps_fail_before_sending(providers, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        capitals().llm.sweep("{q}", output="answer", **kwargs)
    assert providers.count == 0


def test_configuration_columns_must_not_clash(providers):
    with pytest.raises(ConfigError, match="clash"):
        capitals().assign(model="x").llm.sweep("{q}", models=OPENAI)


def test_dry_run_estimates_every_configuration(providers):
    est = capitals().llm.sweep("{q}", models=[OPENAI, ANTHROPIC], params={"temperature": [0, 0.7]}, output="answer",
                               max_tokens=2, prices=PRICES, dry_run=True)
    assert providers.count == 0 and len(est) == 4
    # per request 2 input tokens and 1 to 2 output tokens; 4 requests per configuration
    openai = est[est.model == OPENAI].iloc[0]
    assert (openai["uncached_requests"], openai["input_tokens"], openai["cost_low"], openai["cost_high"]) == \
        (4, 8, 4 * (2 + 2), 4 * (2 + 4))
    assert est.attrs["llmframe"]["cost"] == (2 * 16 + 2 * 4 * (20 + 20), 2 * 24 + 2 * 4 * (20 + 40))


def test_one_progress_display_for_the_whole_sweep(providers, capsys):
    capitals().llm.sweep("{q}", models=[OPENAI, ANTHROPIC], output="answer", prices=PRICES, progress=True)
    err = capsys.readouterr().err
    assert "sweep" in err and "8/8" in err and "cost=$" in err
    assert "claude" not in err  # no bar per configuration
