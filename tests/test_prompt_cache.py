"""Provider prompt caching: OpenAI's prompt_cache_key, Anthropic's cache_control, Gemini's implicit cache, the
simulator's per-protocol cached-token usage, and the report's cost_saved_by_prompt_cache."""

from __future__ import annotations

import pandas as pd
import pytest

from llmframe import constants
from llmframe.plan.prefix import static_prefix
from llmframe.faces.frames import rows_of
from llmframe.plan.template import Template
from llmframe.providers.anthropic import cache_minimum, message_params

RULES = "Rule: label the review by its sentiment, one word. " * 200  # 10,400 characters: 2,600 tokens
ANTHROPIC = "anthropic:claude-sonnet-4-5"  # caches prefixes from 1,024 tokens (Haiku 4.5: 4,096)


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review {i}: fine product, arrived late" for i in range(n)]})


def run(sim, df, template, model, **kwargs):
    base = {"anthropic": sim.anthropic_base_url, "gemini": sim.gemini_base_url}.get(model.split(":")[0], sim.base_url)
    kwargs.setdefault("max_concurrency", 1)  # the first request writes the cache before the others read it
    return df.llm.generate(template, model=model, base_url=base, api_key=sim.api_key, progress=False, usage=True,
                           **kwargs)


def test_static_prefix_of_templates():
    rows = rows_of(reviews(2))
    prompts = Template("Fixed {{braces}} text\n{review} tail", ["review"], system="Be brief.").render(rows)
    prefix = static_prefix(prompts, 2)
    assert (prefix.messages, prefix.chars) == (1, len("Fixed {braces} text\n"))
    assert prefix.text == "Be brief.\nFixed {braces} text\n"
    assert prefix.digest("gpt-4o-mini") != prefix.digest("gpt-4o")  # the key is per model
    assert static_prefix(Template(lambda row: "hi", ["review"]).render(rows), 2) is None  # a function: unknown


def test_openai_gets_a_prompt_cache_key_and_reports_cached_tokens(sim):
    out = run(sim, reviews(6), RULES + "\nReview: {review}", "openai:gpt-4o-mini")
    keys = {entry.body.get("prompt_cache_key") for entry in sim.requests}
    assert len(keys) == 1 and next(iter(keys)).startswith(constants.PROMPT_CACHE_KEY_PREFIX)
    cached = out["response_cached_input_tokens"].tolist()
    assert cached[0] == 0 and all(c > 0 and c % 128 == 0 for c in cached[1:])  # OpenAI's steps of 128
    report = out.llm.report
    assert report["cached_input_tokens"] == sum(cached)
    assert report["cost_saved_by_prompt_cache"] > 0
    # gpt-4o-mini bills cached input at half price: what was saved is half the cached tokens' full price
    assert report["cost_saved_by_prompt_cache"] == pytest.approx(sum(cached) * 0.075 / 1e6, rel=1e-6)


def test_the_cache_key_does_not_change_with_prompt_caching(sim):
    """prompt_cache_key and cache_control change no answer: the answer cache's keys stay as they were."""
    first = run(sim, reviews(3), RULES + "{review}", "openai:gpt-4o-mini", prompt_cache=False)
    assert all("prompt_cache_key" not in e.body for e in sim.requests)
    sim.reset()
    again = run(sim, reviews(3), RULES + "{review}", "openai:gpt-4o-mini")
    assert sim.count == 0 and again["response"].tolist() == first["response"].tolist()


def test_short_prompts_get_no_prompt_cache_key(sim):
    run(sim, reviews(3), "Sentiment: {review}", "openai:gpt-4o-mini")
    assert all("prompt_cache_key" not in e.body for e in sim.requests)


def test_anthropic_breakpoint_on_the_static_text_reads_at_a_tenth(sim):
    out = run(sim, reviews(5), RULES + "\nReview: {review}", ANTHROPIC)
    body = sim.requests[0].body
    blocks = body["messages"][0]["content"]
    assert blocks[0]["cache_control"] == {"type": "ephemeral"} and "cache_control" not in blocks[1]
    assert blocks[0]["text"] + blocks[1]["text"] == RULES + "\nReview: " + reviews(5).review[0]  # same text
    usage = [e.body for e in sim.requests]
    assert len(usage) == 5
    cached = out["response_cached_input_tokens"].tolist()
    static = len(RULES + "\nReview: ") // 4
    assert cached == [0] + [static] * 4
    # every billed token is counted: cache reads and writes are input tokens too
    assert out["response_input_tokens"].tolist() == [len(RULES + "\nReview: " + r) // 4 for r in reviews(5).review]
    # four reads at a tenth, less the one write's premium (1.25x the input rate)
    saved = (4 * static * (3.0 - 0.3) - static * (3.75 - 3.0)) / 1e6
    assert out.llm.report["cost_saved_by_prompt_cache"] == pytest.approx(saved, rel=1e-6)


def test_anthropic_system_prompt_is_the_breakpoint(sim):
    out = run(sim, reviews(3), "{review}", ANTHROPIC, system=RULES)
    system = sim.requests[0].body["system"]
    assert isinstance(system, list) and system[0]["cache_control"] == {"type": "ephemeral"}
    assert isinstance(sim.requests[0].body["messages"][0]["content"], str)  # the row's message is as it was
    assert out["response_cached_input_tokens"].tolist()[1:] == [len(RULES) // 4] * 2
    sim.reset()
    run(sim, reviews(3), "Review: {review}", ANTHROPIC, system=RULES)  # the fixed text after it is shared too
    body = sim.requests[0].body
    assert isinstance(body["system"], str) and body["messages"][0]["content"][0]["text"] == "Review: "


def test_anthropic_no_breakpoint_below_the_models_minimum(sim):
    assert cache_minimum("claude-haiku-4-5") == 4096 and cache_minimum("claude-sonnet-4-5") == 1024
    out = run(sim, reviews(3), RULES + "{review}", "anthropic:claude-haiku-4-5")  # 2,600 < 4,096 tokens
    assert "cache_control" not in str(sim.requests[0].body)
    assert out["response_cached_input_tokens"].tolist() == [0, 0, 0]


def test_simulator_follows_anthropics_minimum_even_when_marked(sim):
    """A breakpoint on a prefix below the minimum caches nothing, as Anthropic does (no error either)."""
    import anthropic

    client = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key=sim.api_key)
    short = [{"type": "text", "text": "short rules " * 10, "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        reply = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, system=short,
                                       messages=[{"role": "user", "content": "hi"}])
    assert reply.usage.cache_read_input_tokens == 0 and reply.usage.cache_creation_input_tokens == 0
    long = [{"type": "text", "text": RULES, "cache_control": {"type": "ephemeral"}}]
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, system=long,
                                   messages=[{"role": "user", "content": "hi"}])
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, system=long,
                                    messages=[{"role": "user", "content": "again"}])
    assert first.usage.cache_creation_input_tokens == len(RULES) // 4 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == len(RULES) // 4 and second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == len(RULES + "again") // 4 - len(RULES) // 4
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, system=long * 5,
                               messages=[{"role": "user", "content": "hi"}])


def test_gemini_implicit_cache_is_reported(sim):
    out = run(sim, reviews(4), RULES + "{review}", "gemini:gemini-2.5-flash")
    cached = out["response_cached_input_tokens"].tolist()
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])
    assert out.llm.report["cost_saved_by_prompt_cache"] > 0


def test_message_params_marks_only_what_every_row_shares():
    messages = [{"role": "system", "content": "S" * 10}, {"role": "user", "content": "fixed row"}]
    named, rest = message_params(messages, {constants.ANTHROPIC_CACHE_PARAM: [1, 6], "temperature": 0.0})
    assert rest == {"temperature": 0.0}  # the marker is never sent as a parameter
    assert named["system"] == "S" * 10
    marked = {"type": "text", "text": "fixed ", "cache_control": {"type": "ephemeral"}}
    assert named["messages"][0]["content"] == [marked, {"type": "text", "text": "row"}]
    assert messages[1]["content"] == "fixed row"  # the request's own messages are left as they are
    named, _ = message_params(messages, {constants.ANTHROPIC_CACHE_PARAM: [1, 0]})
    assert named["system"][0]["cache_control"] == {"type": "ephemeral"}
    # a system prompt with a row value in it, after a user turn: the API's layout would not keep a shared front
    odd = [{"role": "user", "content": "fixed"}, {"role": "system", "content": "{x}"}]
    named, _ = message_params(odd, {constants.ANTHROPIC_CACHE_PARAM: [1, 0]})
    assert named["system"] == "{x}" and named["messages"][0]["content"] == "fixed"


def test_anthropic_batch_lines_carry_the_breakpoint():
    from llmframe.batch.anthropic import AnthropicBatches

    adapter = AnthropicBatches.__new__(AnthropicBatches)  # line_builder reads only the provider's model
    adapter.provider = type("P", (), {"model": "claude-sonnet-4-5"})()
    line = adapter.line_builder({constants.ANTHROPIC_CACHE_PARAM: [0, 4], "max_tokens": 5})(
        "k", [{"role": "user", "content": "fixed row"}])
    assert constants.ANTHROPIC_CACHE_PARAM not in line
    assert '"content":[{"type":"text","text":"fixe","cache_control":{"type":"ephemeral"}}' in line


def test_the_first_request_writes_the_cache_before_the_others_go(sim):
    """At 8 in flight, one cache write, not eight: the run's first request is answered alone."""
    sim.latency = 0.05
    out = run(sim, reviews(12), RULES + "{review}", ANTHROPIC, max_concurrency=8)
    cached = out["response_cached_input_tokens"].tolist()
    assert sorted(cached)[0] == 0 and sorted(cached)[1] > 0  # exactly one row paid the write
    first = min(sim.requests, key=lambda e: e.time)
    others = [e for e in sim.requests if e is not first]
    # sent only once the first was answered, which the simulator holds for its latency at least
    assert all(e.time >= first.time + sim.latency for e in others) and len(others) == 11
    sim.reset()
    out = run(sim, reviews(12), "Short {review}", ANTHROPIC, max_concurrency=8, cache=False)
    assert out["response"].notna().all()  # no shared prefix worth caching: no waiting either


def test_function_templates_send_rows_that_share_a_prefix_together(sim):
    guides = {"a": "Guide A: grade by tone. " * 500, "b": "Guide B: grade by facts. " * 500}
    df = pd.DataFrame({"kind": ["a", "b"] * 6, "review": [f"review {i}" for i in range(12)]})

    def prompt(row):
        return [{"role": "system", "content": guides[row["kind"]]}, {"role": "user", "content": row["review"]}]

    out = run(sim, df, prompt, "openai:gpt-4o-mini")
    order = [e.body["messages"][0]["content"][:7] for e in sim.requests]
    assert order == sorted(order)  # grouped, not interleaved as the rows are
    assert (out["response_cached_input_tokens"] > 0).sum() == 10  # all but the first of each guide
    assert out["response"].tolist() == run(sim, df, prompt, "openai:gpt-4o-mini")["response"].tolist()


def test_anthropic_cost_is_every_billed_token_at_its_own_rate(sim):
    """Cache writes are billed at 1.25x the input rate, reads at a tenth: the run's cost is the simulator's
    billed usage (input, cache read, cache write, output) at genai-prices' rates, summed by hand."""
    from llmframe.cost.prices import _database_price

    price = _database_price(ANTHROPIC, "anthropic", False)  # Sonnet 4.5: tiered above 200k tokens, far off here
    rate = {k: float(getattr(price, k).base) / 1e6 for k in ("input_mtok", "cache_read_mtok", "cache_write_mtok",
                                                             "output_mtok")}
    assert rate["cache_write_mtok"] == pytest.approx(1.25 * rate["input_mtok"])
    out = run(sim, reviews(5), RULES + "\nReview: {review}", ANTHROPIC, max_concurrency=2)
    billed = [e for e in sim.requests if e.status == 200]
    assert len(billed) == 5  # every row paid once
    writes = sum(e.prompt_cache[1] for e in billed)
    assert writes == len(RULES + "\nReview: ") // 4  # the first request wrote the static prefix, once
    assert out["response_input_tokens"].sum() == sum(e.billed[0] for e in billed)  # writes and reads included
    by_hand = sum((e.billed[0] - sum(e.prompt_cache)) * rate["input_mtok"] + e.prompt_cache[0] * rate["cache_read_mtok"]
                  + e.prompt_cache[1] * rate["cache_write_mtok"] + e.billed[1] * rate["output_mtok"] for e in billed)
    report = out.llm.report
    assert report["cost"] == pytest.approx(by_hand, rel=1e-9, abs=1e-12)
    assert out["response_cost"].sum() == pytest.approx(by_hand, rel=1e-9)
    assert report["cache_write_tokens"] == writes and report["price"]["cache_write_mtok"] == 3.75
    # the prompt cache's saving counts the write's premium against the reads' discount
    reads = sum(e.prompt_cache[0] for e in billed)
    expected = (reads * (3.0 - 0.3) - writes * (3.75 - 3.0)) / 1e6
    assert report["cost_saved_by_prompt_cache"] == pytest.approx(expected, rel=1e-6)
    # answers read back from the cache keep their write tokens: the same cost at today's price
    again = run(sim, reviews(5), RULES + "\nReview: {review}", ANTHROPIC)
    assert again["response_cost"].sum() == pytest.approx(by_hand, rel=1e-9) and again.llm.report["cost"] == 0


def test_anthropic_batch_results_carry_cache_writes():
    """A batch result line's cache writes are read, kept through the answer cache, and priced at the batch
    cache-write rate (half the online one)."""
    import json

    from llmframe.batch.anthropic import parse_results
    from llmframe.cost.prices import Pricer
    from llmframe.plan.request import Response

    message = {"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 0,
                         "cache_creation_input_tokens": 2000}}
    found = parse_results(json.dumps({"custom_id": "a", "result": {"type": "succeeded", "message": message}}))
    response = found["a"]
    assert response.batch and (response.input_tokens, response.cached_input_tokens,
                               response.cache_write_tokens) == (2010, 0, 2000)
    again = Response.many_from_cache([response.to_cache(ANTHROPIC, 0.0)])[0]
    assert (again.cache_write_tokens, again.input_tokens, again.batch) == (2000, 2010, True)
    pricer = Pricer(ANTHROPIC, batch=True, price_id="anthropic")
    assert pricer.describe()["cache_write_mtok"] == pytest.approx(3.75 / 2)
    assert pricer.cost(2010, 2, 0, 2000) == pytest.approx((10 * 1.5 + 2000 * 1.875 + 2 * 7.5) / 1e6)


def test_cache_write_tokens_column_and_max_cost_reserve_at_the_write_rate(sim):
    out = run(sim, reviews(3), RULES + "\nReview: {review}", ANTHROPIC)
    static = len(RULES + "\nReview: ") // 4
    assert out["response_cache_write_tokens"].tolist() == [static, 0, 0]
    from llmframe.cost.estimate import request_cost
    from llmframe.cost.prices import Pricer
    from llmframe.plan.request import Request

    pricer = Pricer(ANTHROPIC, price_id="anthropic")
    request = Request("k", [{"role": "user", "content": "x" * 4000}], {})
    assert request_cost(pricer, 0, writes=True)(request) == pytest.approx(1000 * 3.75 / 1e6)
    assert request_cost(pricer, 0)(request) == pytest.approx(1000 * 3.0 / 1e6)
    openai = Pricer("openai:gpt-4o-mini", price_id="openai")  # no write price: writes cost plain input
    assert request_cost(openai, 0, writes=True)(request) == request_cost(openai, 0)(request)


def test_estimate_includes_the_cache_write_premium():
    """Anthropic bills the prefix a breakpoint writes at 1.25x the input rate: once online (the first request goes
    alone), at most every request in a batch job; the estimate's cost range carries it and a note says so."""
    df = reviews(4)
    template = RULES + "\nReview: {review}"
    online = df.llm.estimate(template, model=ANTHROPIC, max_tokens=5)
    plain = df.llm.estimate(template, model=ANTHROPIC, max_tokens=5, prompt_cache=False)
    written = len(RULES + "\nReview: ") // 4
    premium = written * (3.75 - 3.0) / 1e6
    assert online.cost[0] == pytest.approx(plain.cost[0] + premium, rel=1e-9)
    assert online.cost[1] == pytest.approx(plain.cost[1] + premium, rel=1e-9)
    assert any("cache-write rate" in n for n in online.notes)
    batch = df.llm.estimate(template, model=ANTHROPIC, max_tokens=5, mode="batch")
    plain_batch = df.llm.estimate(template, model=ANTHROPIC, max_tokens=5, mode="batch", prompt_cache=False)
    assert batch.cost[1] == pytest.approx(plain_batch.cost[1] + 4 * premium / 2, rel=1e-9)  # batch: half rates
    # no breakpoint (OpenAI, or a prefix below the model's minimum): no premium
    openai = df.llm.estimate(template, model="openai:gpt-4o-mini", max_tokens=5)
    assert not any("cache-write rate" in n for n in openai.notes)
    haiku = df.llm.estimate(template, model="anthropic:claude-haiku-4-5", max_tokens=5)
    assert not any("cache-write rate" in n for n in haiku.notes)


def test_progress_bar_shows_what_the_prompt_cache_saved(sim, monkeypatch):
    from llmframe.engine import progress

    bars = []
    original = progress.Progress.close

    def keep(self, *args, **kwargs):  # the run's own bar, kept to read its counters after the run
        bars.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(progress.Progress, "close", keep)
    out = run(sim, reviews(5), RULES + "\nReview: {review}", ANTHROPIC)
    bar = bars[-1]
    assert bar.prompt_cached == out["response_cached_input_tokens"].sum() > 0
    assert bar.prompt_saved == pytest.approx(out.llm.report["cost_saved_by_prompt_cache"], rel=1e-6)
    assert f"(saved ${bar.prompt_saved:,.4f})" in bar.summary()
