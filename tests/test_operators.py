"""The semantic operators against the simulator's rules (llmframe.testing.rules): each operator's result is the
rule's, exactly; its calls, cache keys, estimates, budget and bad-input checks, on pandas and Polars."""

from __future__ import annotations

import enum
import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from llmframe import constants
from llmframe.errors import BudgetExceeded, ConfigError, TemplateError
from llmframe.ops import semantic
from llmframe.ops.calls import OperatorEstimate
from llmframe.ops.ranking import best_of
from llmframe.testing import BatchSettings, rule_answer
from llmframe.testing.embeddings import vector
from llmframe.testing.rules import apparent, merit, verdict

MODEL = "openai:sim-model"
TICKETS = ["I want a refund for order 7", "The app crashes every 3 minutes", "How do I export to CSV?",
           "Refund me, charged twice, waited 12 days", "Love it", "Crash on start since 40 days",
           "billing page shows 500 error", "Feature idea: dark mode"]


@pytest.fixture
def kw(sim):
    sim.answer = rule_answer
    return {"model": MODEL, "base_url": sim.base_url, "api_key": sim.api_key, "progress": False}


def frame(kind, data: dict):
    return pd.DataFrame(data) if kind == "pandas" else pl.DataFrame(data)


def column(out, name) -> list:
    return out[name].tolist() if isinstance(out, pd.DataFrame) else out[name].to_list()


FACES = ["pandas", "polars"]
PRICES = {MODEL: {"input_mtok": 0.15, "output_mtok": 0.6}}


@pytest.mark.parametrize("kind", FACES)
def test_filter_keeps_exactly_the_rows_the_rule_accepts(kw, sim, kind):
    df = frame(kind, {"text": TICKETS, "n": list(range(len(TICKETS)))})
    question = 'Does the customer ask for a "refund"? {text}'
    out = df.llm.filter(question, **kw)
    expected = [t for t in TICKETS if verdict(question.format(text=t))[0]]
    assert column(out, "text") == expected and len(expected) == 2
    assert column(out, "n") == [0, 3]
    assert out.llm.report["calls"] == len(TICKETS) and out.llm.report["kept"] == 2
    mask = df.llm.filter(question, mask=True, **kw)
    assert list(mask) == [t in expected for t in TICKETS]
    explained = df.llm.filter(question, explain=True, **kw)
    assert column(explained, "reason") == ['It mentions "refund".'] * 2


def test_filter_has_generates_cache_keys_for_the_same_prompt_and_schema(kw, sim):
    df = pd.DataFrame({"text": TICKETS})
    question = 'Is it about a "crash"? {text}'
    df.llm.filter(question, explain=True, **kw)
    sent = sim.count
    out = df.llm.generate(question, **semantic.call_of("filter", explain=True), **kw)
    assert sim.count == sent and out.llm.report["cached"] == len(TICKETS)
    assert out["answer"].tolist() == [verdict(question.format(text=t))[0] for t in TICKETS]
    body = sim.requests[0].body
    assert body["messages"][0] == {"role": "system", "content": semantic.FILTER_SYSTEM + semantic.EXPLAIN_SYSTEM}
    assert body["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize("kind", FACES)
def test_classify_gives_a_category_of_every_label(kw, sim, kind):
    df = frame(kind, {"text": TICKETS})
    labels = {"refund": "wants money back", "crash": "the app stops", "other": "anything else"}
    out = df.llm.classify("Ticket: {text}", labels=labels, **kw)
    expected = ["refund", "other", "other", "refund", "other", "crash", "other", "other"]
    assert [str(v) for v in column(out, "label")] == expected
    if kind == "pandas":
        assert list(out["label"].cat.categories) == list(labels)
    else:
        assert out.schema["label"] == pl.Enum(list(labels))
    system = sim.requests[0].body["messages"][0]["content"]
    assert "- refund: wants money back" in system and "- other: anything else" in system
    enum_ = sim.requests[0].body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
    assert enum_ == list(labels)


@pytest.mark.parametrize("kind", FACES)
def test_classify_multi_gives_a_list_column(kw, sim, kind):
    class Topic(enum.Enum):
        REFUND = "refund"
        CRASH = "crash"
        DAYS = "days"

    df = frame(kind, {"text": TICKETS})
    out = df.llm.classify("{text}", labels=Topic, multi=True, output="topics", **kw)
    got = [list(v) for v in column(out, "topics")]
    assert got[3] == ["refund", "days"] and got[5] == ["crash", "days"] and got[4] == []
    if kind == "polars":
        assert out.schema["topics"] == pl.List(pl.Enum(["refund", "crash", "days"]))


def test_classify_cannot_return_a_label_outside_the_set(kw, sim):
    sim.answer = lambda body: json.dumps({"label": "spam"})
    with pytest.warns(RuntimeWarning, match="2 of 2 rows failed"):
        out = pd.DataFrame({"text": ["a", "b"]}).llm.classify("{text}", labels=["x", "y"], invalid_retries=0, **kw)
    assert out["label"].isna().all() and out.llm.report["failed"] == 2


@pytest.mark.parametrize("labels, words", [([], "empty"), (["a", "a"], "more than once"), ({"a": 1}, "description"),
                                           ("abc", "list of strings"), (["a", ""], "non-empty")])
def test_bad_labels_are_refused_before_anything_is_sent(kw, sim, labels, words):
    with pytest.raises(ConfigError, match=words):
        pd.DataFrame({"text": ["a"]}).llm.classify("{text}", labels=labels, **kw)
    assert sim.count == 0


PRODUCTS = ["red wool scarf", "blue cotton shirt", "green rain jacket", "black leather boots", "white linen dress",
            "grey wool socks", "yellow rain hat", "brown leather belt"]
LISTINGS = ["scarf red wool, knitted", "shirt in blue cotton", "jacket for rain, green", "boots black leather size 9",
            "dress linen white summer", "socks grey wool pack", "hat yellow rain proof", "belt brown leather",
            "wool scarf red", "cotton shirt blue slim"]


def _embed(texts):
    return np.stack([vector(t, 1536) for t in texts])


@pytest.mark.parametrize("kind", FACES)
def test_join_with_blocking_finds_the_pairs_the_rule_accepts_among_the_candidates(kw, sim, kind):
    left = frame(kind, {"name": PRODUCTS, "id": list(range(8))})
    right = frame(kind, {"title": LISTINGS, "id": list(range(10))})
    template = 'Is this listing for a "scarf"? {right.title} / {left.name}'
    out = left.llm.join(right, template, candidates=2, embed_options={"base_url": sim.base_url,
                                                                        "api_key": sim.api_key}, **kw)
    a, b = _embed(PRODUCTS), _embed(LISTINGS)
    scores = (a @ b.T)
    expected = set()
    for i in range(len(PRODUCTS)):
        for j in np.argsort(-scores[i], kind="stable")[:2]:
            if verdict(template.replace("{right.title}", LISTINGS[j]).replace("{left.name}", PRODUCTS[i]))[0]:
                expected.add((i, int(j)))
    got = set(zip(column(out, "id_left"), column(out, "id_right")))
    assert got == expected and (0, 0) in got and (0, 8) in got
    assert out.llm.report["calls"] == 8 * 2 and out.llm.report["naive_calls"] == 80
    assert "similarity" in list(out.columns)


def test_join_of_every_pair_is_exact_and_refused_above_the_limit(kw, sim, monkeypatch):
    left, right = pd.DataFrame({"name": PRODUCTS}), pd.DataFrame({"title": LISTINGS})
    template = 'Is "{left.name}" in {right.title}?'
    out = left.llm.join(right, 'Is the word "wool" in {left.name} {right.title}?', candidates=None, **kw)
    expected = {(p, t) for p in PRODUCTS for t in LISTINGS if "wool" in f"{p} {t}"}
    assert set(zip(out["name"], out["title"])) == expected and out.llm.report["calls"] == 80
    monkeypatch.setattr(constants, "JOIN_ALL_PAIRS_LIMIT", 50)
    sent = sim.count
    with pytest.raises(ConfigError, match="80 calls"):
        left.llm.join(right, template, candidates=None, **kw)
    estimate = left.llm.join(right, template, candidates=None, dry_run=True, prices=PRICES, **kw)
    assert isinstance(estimate, OperatorEstimate) and estimate.calls == (80, 80) and sim.count == sent
    left.llm.join(right, template, candidates=None, **kw)  # its dry run was seen
    assert sim.count == sent + 80


@pytest.mark.parametrize("template, side", [("{left.nam} {right.title}", "left frame has no column 'nam'"),
                                            ("{left.name} {right.titl}", "right frame has no column 'titl'"),
                                            ("{name} {right.title}", "names no side"),
                                            ("{left.name} only", "both frames")])
def test_join_template_errors_name_the_side(kw, sim, template, side):
    with pytest.raises(TemplateError, match=side):
        pd.DataFrame({"name": ["a"]}).llm.join(pd.DataFrame({"title": ["b"]}), template, **kw)
    assert sim.count == 0


def test_best_of_finds_the_m_best_with_few_comparisons():
    rng = np.random.default_rng(3)
    values = rng.permutation(1000).tolist()
    calls = []

    def compare(pairs):
        calls.extend(pairs)
        return [a if values[a] >= values[b] else b for a, b in pairs]

    best = best_of(list(range(1000)), 10, compare)
    assert [values[i] for i in best] == list(range(999, 989, -1))
    assert len(calls) < 1000 + 10 * 25


@pytest.mark.parametrize("kind", FACES)
def test_top_k_returns_the_rules_top_k_with_ties_refined_pairwise(kw, sim, kind):
    rng = np.random.default_rng(7)
    merits = rng.permutation(400)[:200].tolist()  # most above 100: the pointwise scores tie at 100
    df = frame(kind, {"text": [f"ticket open for {m} hours" for m in merits]})
    out = df.llm.top_k("How urgent is it? {text}", k=5, **kw)
    assert [merit(t) for t in column(out, "text")] == sorted(merits, reverse=True)[:5]
    report = out.llm.report
    assert report["calls"] < 2 * len(merits) and report["stages"]["score"]["rows"] == 200
    assert report["stages"]["compare"]["rows"] > 0


@pytest.mark.parametrize("kind", FACES)
def test_top_k_refines_the_boundary_where_pointwise_scores_mislead(kw, sim, kind):
    texts = ["waited 90 hours", "waited 80 hours", "waited 61 hours (looks ~58)", "waited 57 hours (looks ~60)",
             "waited 59 hours", "waited 20 hours"]
    assert [apparent(t) for t in texts] == [90, 80, 58, 60, 59, 20]  # the pointwise pass puts 57 third
    df = frame(kind, {"text": texts})
    out = df.llm.top_k("How urgent? {text}", k=3, **kw)  # margin=5: 60, 59 and 58 are compared
    assert [merit(t) for t in column(out, "text")] == [90, 80, 61]
    refined = out.llm.report["refined"]
    assert refined == {"cut_score": 60.0, "margin": 5.0, "boundary_rows": 3, "in_by_score": 2, "pairwise_calls": 2}
    assert out.llm.report["calls"] == 6 + 2 and out.llm.report["stages"]["compare"]["rows"] == 2
    scores_only = df.llm.top_k("How urgent? {text}", k=3, margin=0, **kw)  # only ties at the cut: none here
    assert [merit(t) for t in column(scores_only, "text")] == [90, 80, 57]
    assert scores_only.llm.report["refined"]["pairwise_calls"] == 0


def test_top_k_is_exact_when_the_score_errors_are_within_half_the_margin(kw, sim):
    rng = np.random.default_rng(11)
    merits = rng.permutation(95)[:75].tolist()  # distinct merits under 95
    noise = rng.integers(-2, 3, size=len(merits)).tolist()  # each pointwise score off by at most 2
    df = pd.DataFrame({"text": [f"open {m} days (~{max(m + e, 0)})" for m, e in zip(merits, noise)]})
    out = df.llm.top_k("{text}", k=10, **kw)  # margin 5 >= 2 x 2
    assert [merit(t) for t in out["text"]] == sorted(merits, reverse=True)[:10]
    assert out.llm.report["calls"] < 2 * len(merits)
    rough = df.llm.top_k("{text}", k=10, margin=0, **kw)
    assert [merit(t) for t in rough["text"]] != sorted(merits, reverse=True)[:10]


def test_top_k_margin_is_checked(kw, sim):
    for bad in (-1, "5", True, float("nan")):
        with pytest.raises(ConfigError, match="margin must be a number"):
            pd.DataFrame({"text": ["a", "b"]}).llm.top_k("{text}", k=1, margin=bad, **kw)
    assert sim.count == 0


@pytest.mark.parametrize("kind", FACES)
def test_rank_orders_every_row_by_score(kw, sim, kind):
    df = frame(kind, {"text": ["waited 5 days", "waited 50 days", "no wait", "waited 7 days"]})
    out = df.llm.rank("{text}", **kw)
    assert column(out, "text") == ["waited 50 days", "waited 7 days", "waited 5 days", "no wait"]
    assert column(out, "score") == [50, 7, 5, 0]


def test_top_k_larger_than_the_frame_is_refused(kw, sim):
    with pytest.raises(ConfigError, match="larger than the frame"):
        pd.DataFrame({"text": ["a", "b"]}).llm.top_k("{text}", k=3, **kw)
    assert sim.count == 0


@pytest.mark.parametrize("kind", FACES)
def test_agg_folds_groups_that_do_not_fit_and_caches_the_fold(kw, sim, kind):
    products = ["laptop"] * 30 + ["phone"] * 3
    df = frame(kind, {"product": products, "complaint": [f"complaint number {i} about the thing" for i in range(33)]})
    out = df.llm.agg("Summarise the {complaint}s about {product}", by="product", context_tokens=150,
                     max_tokens=20, **kw)
    assert column(out, "product") == ["laptop", "phone"]
    assert column(out, "response") == ["30 rows", "3 rows"]
    assert out.llm.report["levels"] >= 2 and out.llm.report["groups"] == 2
    sent = sim.count
    again = df.llm.agg("Summarise the {complaint}s about {product}", by="product", context_tokens=150,
                       max_tokens=20, **kw)
    assert sim.count == sent and column(again, "response") == ["30 rows", "3 rows"]
    whole = df.llm.agg("Summarise the {complaint}s", **kw)
    assert column(whole, "response") == ["33 rows"] and whole.llm.report["levels"] == 1


def test_agg_estimate_prices_the_whole_fold_and_predicts_its_calls(kw, sim):
    products = ["laptop"] * 60 + ["phone"] * 3
    df = pd.DataFrame({"product": products, "complaint": [f"complaint number {i} about the thing" for i in range(63)]})
    how = dict(by="product", context_tokens=150, max_tokens=20, prices=PRICES)
    estimate = df.llm.agg("Summarise the {complaint}s about {product}", dry_run=True, **how, **kw)
    assert sim.count == 0
    assert [name for name, _ in estimate.stages][:2] == ["rows", "combine 1"] and len(estimate.stages) >= 3
    low, high = estimate.calls
    assert low < high and estimate.cost[0] < estimate.cost[1]
    assert estimate.cost[1] == pytest.approx(sum(e.cost[1] for _, e in estimate.stages))
    batch = df.llm.agg("Summarise the {complaint}s about {product}", dry_run=True, mode="batch", **how, **kw)
    assert [e.mode for _, e in batch.stages] == ["batch"] + ["online"] * (len(batch.stages) - 1)  # as they run
    short = df.llm.agg("Summarise the {complaint}s about {product}", **how, **kw)  # "60 rows": one combining call
    assert short.llm.report["calls"] == low and short.llm.report["levels"] == 2
    limit = how["max_tokens"] * 4  # the simulator's characters per token: each answer exactly max_tokens long

    def long(body):
        answer = rule_answer(body)
        return (answer + " " + "x" * limit)[:limit] if answer.endswith(" rows") else answer

    at_length = "Summarise the {complaint}s about {product} at length"
    predicted = df.llm.agg(at_length, dry_run=True, **how, **kw)
    sim.answer = long
    full = df.llm.agg(at_length, **how, **kw)
    assert full.llm.report["calls"] == predicted.calls[1] and full.llm.report["levels"] == len(predicted.stages)
    assert full.llm.report["stages"]["combine 1"]["rows"] == predicted.stages[1][1].uncached_requests


def test_agg_estimate_says_which_groups_long_answers_could_not_combine(kw, sim):
    df = pd.DataFrame({"g": ["a"] * 12 + ["b"], "t": [f"complaint number {i} about it" for i in range(13)]})
    estimate = df.llm.agg("Sum up {t}", by="g", context_tokens=80, max_tokens=8, dry_run=True, **kw)
    assert any("1 group(s): partial answers as long as max_tokens" in n for n in estimate.notes)
    out = df.llm.agg("Sum up {t}", by="g", context_tokens=80, max_tokens=8, **kw)  # short answers: combined
    assert out["response"].tolist() == ["12 rows", "1 rows"]
    assert estimate.calls[0] <= out.llm.report["calls"] <= estimate.calls[1]


def test_agg_with_a_row_longer_than_the_context_fails_its_group_only(kw, sim):
    df = pd.DataFrame({"g": ["a", "b"], "t": ["short", "long " * 500]})
    out = df.llm.agg("Summarise {t}", by="g", context_tokens=300, **kw)
    assert out["response"].tolist()[0] == "1 rows" and pd.isna(out["response"].tolist()[1])
    assert "more than the" in out["response_error"].tolist()[1]
    sent = sim.count
    with pytest.raises(ConfigError, match="group \\('b',\\)"):
        df.llm.agg("Summarise {t}", by="g", context_tokens=300, errors="raise", **kw)
    assert sim.count == sent


def test_agg_gives_structured_answers(kw, sim):
    schema = {"title": "summary", "type": "object", "properties": {"text": {"type": "string"},
              "count": {"type": "integer"}}, "required": ["text", "count"], "additionalProperties": False}
    out = pd.DataFrame({"g": ["a", "a", "b"], "t": ["x", "y", "z"]}).llm.agg("Sum up {t}", by="g", output=schema, **kw)
    assert list(out.columns) == ["g", "text", "count", "summary_error"] and len(out) == 2


def test_every_operator_estimates_without_sending(kw, sim):
    df = pd.DataFrame({"text": TICKETS})
    for call in (lambda: df.llm.filter("{text}", dry_run=True, **kw),
                 lambda: df.llm.classify("{text}", labels=["a", "b"], dry_run=True, **kw),
                 lambda: df.llm.top_k("{text}", k=3, dry_run=True, **kw),
                 lambda: df.llm.rank("{text}", dry_run=True, **kw),
                 lambda: df.llm.agg("{text}", dry_run=True, **kw),
                 lambda: df.llm.join(df, "{left.text} {right.text}", dry_run=True, **kw)):
        estimate = call()
        assert isinstance(estimate, OperatorEstimate) and estimate.calls[0] >= 1
    assert sim.count == 0


def test_max_cost_caps_an_operator(kw, sim):
    priced = {"openai:priced-model": {"input_mtok": 1e6, "output_mtok": 2e6}}
    df = pd.DataFrame({"text": [f'is "x" in row {i}' for i in range(20)]})
    with pytest.raises(BudgetExceeded, match="filter stage"):
        df.llm.filter("{text}", **{**kw, "model": "openai:priced-model"}, prices=priced, max_cost=200.0, max_tokens=5,
                      max_concurrency=1)
    assert 0 < sim.count < 20


def test_filter_and_classify_run_through_the_batch_api(kw, sim):
    sim.batches.settings = BatchSettings(seconds=0.05)
    df = pd.DataFrame({"text": TICKETS})
    out = df.llm.filter('Is it a "crash"? {text}', mode="batch", poll_interval=0.02, **kw)
    assert out["text"].tolist() == [TICKETS[1], TICKETS[5]] and out.llm.report["mode"] == "batch"
    labels = df.llm.classify("{text}", labels=["refund", "other"], mode="batch", poll_interval=0.02, **kw)
    assert labels["label"].tolist()[0] == "refund"


def test_unknown_options_are_refused(kw, sim):
    with pytest.raises(ConfigError, match="unknown option"):
        pd.DataFrame({"text": ["a"]}).llm.filter("{text}", output_mode="object", **kw)


def test_classify_has_generates_cache_keys_too(kw, sim):
    df = pd.DataFrame({"text": TICKETS})
    labels = {"refund": "money back", "crash": None}
    df.llm.classify("{text}", labels=labels, multi=True, **kw)
    sent = sim.count
    out = df.llm.generate("{text}", **semantic.call_of("classify", labels=labels, multi=True), **kw)
    assert sim.count == sent and out.llm.report["cached"] == len(TICKETS)


def test_top_k_scores_through_the_batch_api_and_compares_online(kw, sim):
    sim.batches.settings = BatchSettings(seconds=0.05)
    df = pd.DataFrame({"text": [f"open for {m} hours" for m in (5, 150, 120, 7, 300)]})
    out = df.llm.top_k("{text}", k=2, mode="batch", poll_interval=0.02, **kw)
    assert out["text"].tolist() == ["open for 300 hours", "open for 150 hours"]
    assert out.llm.report["mode"] == "batch" and out.llm.report["stages"]["compare"]["rows"] >= 2
    assert any(r.path.endswith("/chat/completions") for r in sim.requests)  # the comparisons, online


@pytest.mark.parametrize("kind", FACES)
def test_operators_on_an_empty_frame(kw, sim, kind):
    empty = frame(kind, {"text": pd.Series([], dtype=str)} if kind == "pandas" else {"text": pl.Series([], dtype=pl.String)})
    assert len(empty.llm.filter('"x" {text}', **kw)) == 0
    assert len(empty.llm.classify("{text}", labels=["a"], **kw)) == 0
    assert len(empty.llm.agg("{text}", **kw)) == 0
    assert len(empty.llm.join(empty, "{left.text} {right.text}", **kw)) == 0  # embeds with the chat call's endpoint
    assert sim.count == 0


def test_the_simulators_rules():
    assert verdict('Is "Refund" asked? please refund me') == (True, "Refund")
    assert verdict('Is "refund" asked? no') == (False, None)
    assert merit('rate "999" it: waited 12 days, 3 times') == 12
    body = {"messages": [{"role": "user", "content": "a bug report"}], "response_format": {
        "type": "json_schema", "json_schema": {"schema": {"properties": {"label": {"enum": ["bug", "other"]}}}}}}
    assert json.loads(rule_answer(body)) == {"label": "bug"}
    body["messages"][0]["content"] = "nothing"
    assert json.loads(rule_answer(body)) == {"label": "other"}
    listing = {"messages": [{"role": "user", "content": "Sum up\n\nRows:\n1. a\n2. b\n3. 4 rows"}]}
    assert rule_answer(listing) == "6 rows"


def test_agg_puts_every_missing_key_in_one_group(kw, sim):
    df = pd.DataFrame({"g": [1.0, np.nan, 1.0, np.nan, np.nan], "t": list("abcde")})
    out = df.llm.agg("{t}", by="g", **kw)
    assert out["response"].tolist() == ["2 rows", "3 rows"] and len(out) == 2


def test_join_on_the_frames_own_vector_columns_sends_no_embedding(kw, sim):
    emb = {"model": "openai:text-embedding-3-small", "base_url": sim.base_url, "api_key": sim.api_key,
           "progress": False}
    left = pd.DataFrame({"name": PRODUCTS}).llm.embed("{name}", **emb)
    right = pd.DataFrame({"title": LISTINGS}).llm.embed("{title}", **emb)
    sent = sim.count
    out = left.llm.join(right, 'Is this listing for a "scarf"? {right.title} / {left.name}', candidates=2,
                        on="embedding", **kw)
    assert sim.count == sent + 16 and not [r for r in sim.requests[sent:] if r.path.endswith("/embeddings")]
    embedded_here = left[["name"]].llm.join(right[["title"]], 'Is this listing for a "scarf"? {right.title} / '
                                            '{left.name}', candidates=2, **kw)  # the same vectors, made here
    assert set(zip(out["name"], out["title"])) == set(zip(embedded_here["name"], embedded_here["title"]))
    assert (PRODUCTS[0], LISTINGS[0]) in set(zip(out["name"], out["title"]))
    with pytest.raises(ConfigError, match="other has no vector column 'vec'"):
        left.llm.join(right, "{left.name} {right.title}", on=("embedding", "vec"), **kw)
    polars_out = pl.from_pandas(left.drop(columns="embedding_error")).llm.join(
        pl.from_pandas(right.drop(columns="embedding_error")),
        'Is this listing for a "scarf"? {right.title} / {left.name}', candidates=2, on="embedding", **kw)
    assert set(polars_out.select("name", "title").iter_rows()) == set(zip(out["name"], out["title"]))


def test_max_cost_covers_a_joins_embeddings_and_checks(kw, sim):
    prices = {MODEL: {"input_mtok": 1.0, "output_mtok": 1.0},
              "openai:text-embedding-3-small": {"input_mtok": 1.0, "output_mtok": 0.0}}
    left, right = pd.DataFrame({"name": PRODUCTS}), pd.DataFrame({"title": LISTINGS})
    out = left.llm.join(right, 'Is it a "scarf"? {right.title} {left.name}', candidates=2, max_cost=1.0,
                        prices=prices, embed_options={"prices": prices}, **kw)
    report = out.llm.report
    stages = report["stages"]
    assert stages["embed left"]["cost"] > 0 and stages["embed right"]["cost"] > 0 and stages["check pairs"]["cost"] > 0
    assert report["cost"] == pytest.approx(sum(stage["cost"] for stage in stages.values()))
    assert stages["embed left"]["requests_sent"] == 8 and stages["check pairs"]["rows"] == 16
