"""context=: a document every row shares, its own message after the system prompt; Gemini's explicit cached
content (made once through the real google-genai SDK, named by every row, deleted after the run, also when it is
interrupted), OpenAI's prompt_cache_key and Anthropic's breakpoint on it."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from .conftest import ctrl_c_when

DOC = "Policy {section 1}: refunds within 30 days; exchanges within 60 days. " * 150  # 10,650 chars: 2,662 tokens
GEMINI = "gemini:gemini-2.5-flash"


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"review {i}: arrived late, works fine" for i in range(n)]})


def run(sim, df, model, **kwargs):
    base = {"anthropic": sim.anthropic_base_url, "gemini": sim.gemini_base_url}.get(model.split(":")[0], sim.base_url)
    kwargs.setdefault("max_concurrency", 2)
    return df.llm.generate("Review: {review}\nGrade:", model=model, base_url=base, api_key=sim.api_key,
                           progress=False, usage=True, **kwargs)


def wait_for(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_context_is_a_message_of_its_own_after_the_system_prompt(sim):
    out = run(sim, reviews(3), "openai:gpt-4o-mini", context=DOC, system="Be brief.")
    messages = sim.requests[0].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    assert messages[1]["content"] == DOC  # braces are the document's text, not placeholders
    assert messages[2]["content"].startswith("Review: review ")
    assert all(e.body.get("prompt_cache_key") for e in sim.requests)  # the context is the shared prefix
    sim.reset()
    plain = run(sim, reviews(3), "openai:gpt-4o-mini", system="Be brief.")
    assert sim.count == 3  # another prompt: other cache keys, nothing answered from the context= run
    assert out["response"].notna().all() and plain["response"].notna().all()


def test_anthropic_marks_the_context(sim):
    out = run(sim, reviews(3), "anthropic:claude-sonnet-4-5", context=DOC, max_concurrency=1)
    body = sim.requests[0].body
    assert body["messages"][0]["content"] == DOC  # the context, then the fixed text before the row's value
    assert body["messages"][1]["content"][0] == {"type": "text", "text": "Review: ",
                                                 "cache_control": {"type": "ephemeral"}}
    cached = out["response_cached_input_tokens"].tolist()
    assert cached[0] == 0 and all(c >= len(DOC) // 4 for c in cached[1:])


def test_gemini_context_goes_into_one_explicit_cached_content(sim):
    df = reviews(6)
    out = run(sim, df, GEMINI, context=DOC, system="Be brief.")
    caches = sim.gemini_caches
    assert len(caches.created) == 1 and caches.deleted == caches.created and caches.live() == []
    for e in sim.requests:
        assert e.body["cachedContent"] == caches.created[0]
        assert "systemInstruction" not in e.body  # it is in the cached content
        assert len(e.body["contents"]) == 1 and e.body["contents"][0]["parts"][0]["text"].startswith("Review:")
    cached = (len("Be brief.") + len(DOC)) // 4
    assert out["response_cached_input_tokens"].tolist() == [cached] * 6  # from the first row on
    assert out.llm.report["cost_saved_by_prompt_cache"] > 0
    sim.reset()
    inline = run(sim, df, GEMINI, context=DOC, system="Be brief.", prompt_cache=False, cache=False)
    assert sim.gemini_caches.created == [] and all("cachedContent" not in e.body for e in sim.requests)
    assert inline["response"].tolist() == out["response"].tolist()  # the model reads the same prompt
    assert inline["response_input_tokens"].tolist() == out["response_input_tokens"].tolist()


def test_gemini_context_below_the_minimum_or_for_one_row_is_sent_inline(sim):
    run(sim, reviews(3), GEMINI, context="A short policy: refunds within 30 days.")
    run(sim, reviews(1), GEMINI, context=DOC)
    assert sim.gemini_caches.created == [] and all("cachedContent" not in e.body for e in sim.requests)
    assert sim.requests[0].body["contents"][0]["parts"][0]["text"] == "A short policy: refunds within 30 days."


def test_gemini_cache_is_deleted_when_the_run_is_interrupted(sim):
    sim.latency = 0.05
    caches = sim.gemini_caches
    ctrl_c_when(lambda: sim.count >= 3)
    with pytest.raises(KeyboardInterrupt):
        run(sim, reviews(200), GEMINI, context=DOC, max_concurrency=1)
    assert len(caches.created) == 1
    assert wait_for(lambda: caches.deleted == caches.created), "the cached content outlived the run"


def test_gemini_batch_mode_sends_the_context_inline(sim):
    out = run(sim, reviews(3), GEMINI, context=DOC, mode="batch", poll_interval=0.05)
    assert out["response"].notna().all() and sim.gemini_caches.created == []


def test_the_gemini_simulator_refuses_what_google_refuses(sim):
    from google import genai
    from google.genai import errors, types

    client = genai.Client(api_key=sim.api_key, http_options=types.HttpOptions(base_url=sim.gemini_base_url))
    with pytest.raises(errors.ClientError, match="too small"):
        client.caches.create(model="gemini-2.5-flash", config=types.CreateCachedContentConfig(
            contents=[types.Content(role="user", parts=[types.Part(text="short")])], ttl="60s"))
    made = client.caches.create(model="gemini-2.5-flash", config=types.CreateCachedContentConfig(
        contents=[types.Content(role="user", parts=[types.Part(text=DOC)])], ttl="60s"))
    assert made.name.startswith("cachedContents/") and made.usage_metadata.total_token_count == len(DOC) // 4
    assert client.caches.get(name=made.name).name == made.name
    with pytest.raises(errors.ClientError, match="system_instruction"):
        client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=types.GenerateContentConfig(
            cached_content=made.name, system_instruction="no"))
    reply = client.models.generate_content(model="gemini-2.5-flash", contents="hi",
                                           config=types.GenerateContentConfig(cached_content=made.name))
    assert reply.usage_metadata.cached_content_token_count == len(DOC) // 4
    client.caches.delete(name=made.name)
    with pytest.raises(errors.ClientError, match="not found"):
        client.models.generate_content(model="gemini-2.5-flash", contents="hi",
                                       config=types.GenerateContentConfig(cached_content=made.name))


def test_llmframe_run_takes_a_context_file(tmp_path):
    from llmframe.apps import cli
    from llmframe.errors import ConfigError

    doc = tmp_path / "policy.txt"
    doc.write_text(DOC, encoding="utf-8")
    args = cli.build_parser().parse_args(["run", "i.parquet", "o.parquet", "-t", "{x}", "-m", GEMINI,
                                          "--context", f"@{doc}"])
    assert cli.generate_options(args) == {"context": DOC}
    args = cli.build_parser().parse_args(["run", "i.parquet", "o.parquet", "-t", "{x}", "-m", GEMINI,
                                          "--context", "inline text"])
    assert cli.generate_options(args) == {"context": "inline text"}
    with pytest.raises(ConfigError, match="cannot read"):
        cli.generate_options(cli.build_parser().parse_args(["run", "i.parquet", "o.parquet", "-t", "{x}", "-m",
                                                            GEMINI, "--context", f"@{tmp_path / 'none.txt'}"]))


def test_context_must_be_text(sim):
    from llmframe.errors import ConfigError

    with pytest.raises(ConfigError, match="non-empty string"):
        run(sim, reviews(2), "openai:gpt-4o-mini", context=["not", "text"])
    assert sim.count == 0


def test_a_function_template_gets_the_context_too(sim):
    reviews(2).llm.generate(lambda row: f"Grade: {row['review']}", model="openai:gpt-4o-mini", context=DOC,
                            system="Be brief.", base_url=sim.base_url, api_key=sim.api_key, progress=False)
    assert [m["role"] for m in sim.requests[0].body["messages"]] == ["system", "user", "user"]
    assert sim.requests[0].body["messages"][1]["content"] == DOC
