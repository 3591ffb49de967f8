"""One suite every provider must pass: the same behaviour from the user's side, through each official SDK.

A provider is done when it passes this module; add it to PROVIDERS with the simulator route it speaks.
"""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import BaseModel

from llmframe.errors import ConfigError, RunAborted
from llmframe.testing import SimulatedError, digest_answer

# provider (a prefix, or prefix-api) -> (the simulator's base URL attribute, the environment variables of its key)
PROVIDERS = {
    "openai": ("base_url", ("OPENAI_API_KEY",)),
    "openai-responses": ("base_url", ("OPENAI_API_KEY",)),  # api="responses": OpenAI's Responses API
    "azure": ("azure_endpoint", ("AZURE_OPENAI_API_KEY",)),  # Azure OpenAI's paths and api-key header
    "azure-responses": ("azure_endpoint", ("AZURE_OPENAI_API_KEY",)),
    "mistral": ("mistral_base_url", ("MISTRAL_API_KEY",)),  # Mistral's chat API, on the mistralai SDK
    "anthropic": ("anthropic_base_url", ("ANTHROPIC_API_KEY",)),
    "gemini": ("gemini_base_url", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
}


class Verdict(BaseModel):
    label: str
    score: int


@pytest.fixture(params=list(PROVIDERS))
def vendor(request, sim, monkeypatch):
    """gen() bound to one provider's route of the simulator."""
    prefix = request.param
    url_attribute, key_env = PROVIDERS[prefix]
    for name in key_env:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-04-01-preview")  # Azure's, which the others ignore

    provider, _, api = prefix.partition("-")

    def gen(obj, template, **kwargs):
        kwargs.setdefault("model", f"{provider}:sim-model")
        if api:
            kwargs.setdefault("api", api)
        kwargs.setdefault("base_url", getattr(sim, url_attribute))
        kwargs.setdefault("api_key", sim.api_key)
        kwargs.setdefault("progress", False)
        return obj.llm.generate(template, **kwargs)

    gen.prefix, gen.provider = prefix, provider
    return gen


def frame() -> pd.DataFrame:
    return pd.DataFrame({"q": ["first", "second", "third"]}, index=["c", "a", "b"])


def test_text_answers_align_and_usage_is_recorded(vendor, sim):
    out = vendor(frame(), "Question: {q}")
    assert out["response"].tolist() == [digest_answer(f"Question: {q}") for q in frame()["q"]]
    report = out.attrs["llmframe"]
    assert report["requests_sent"] == 3 and report["input_tokens"] > 0 and report["output_tokens"] > 0
    assert report["finish_reasons"] == {"stop": 3}


def test_system_prompt_and_chat_templates_reach_the_model(vendor, sim):
    seen = []
    sim.answer = lambda body: seen.append(body["messages"]) or "ok"
    vendor(frame().head(1), [{"role": "user", "content": "Hi {q}"}, {"role": "assistant", "content": "Hello"},
                             {"role": "user", "content": "Again {q}"}], system="Be brief.")
    assert seen == [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi first"},
                     {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Again first"}]]


def test_structured_output_becomes_typed_columns(vendor, sim):
    out = vendor(frame(), "Judge {q}", output=Verdict)
    assert out["verdict_error"].isna().all(), out["verdict_error"].tolist()
    assert out["score"].dtype == "Int64" and out["label"].dtype == pd.Series(["x"]).dtype


def test_rerun_is_served_from_cache(vendor, sim):
    vendor(frame(), "{q}")
    again = vendor(frame(), "{q}")
    assert sim.count == 3 and again.attrs["llmframe"]["cached"] == 3


def test_a_forced_failure_is_a_row_error(vendor, sim):
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(400, "refused")) if "second" in str(
        body["messages"]) else "fine"
    out = vendor(frame(), "{q}")
    assert out["response"].isna().tolist() == [False, True, False]
    assert "refused" in out.loc["a", "response_error"] and out.loc["a", "response_error"].startswith("HTTP 400")


def test_429_retry_after_is_honoured(vendor, sim):
    seen: dict[str, int] = {}

    def answer(body):
        prompt = body["messages"][-1]["content"]
        seen[prompt] = seen.get(prompt, 0) + 1
        if seen[prompt] == 1:
            raise SimulatedError(429, "slow down", headers={"retry-after-ms": "200", "retry-after": "1"})
        return digest_answer(prompt)

    sim.answer = answer
    out = vendor(frame(), "{q}")
    assert out["response_error"].isna().all()
    for attempts in sim.attempts_by_prompt().values():
        assert len(attempts) == 2 and attempts[1].time - attempts[0].time >= 0.2


# Per provider, in its own reply shape: the answer text as a number, a token count that is not a number.
MISTYPED = {
    "openai": ({"choices.0.message.content": 7}, {"usage.completion_tokens": "many"}),
    "openai-responses": ({"output.0.content.0.text": 7}, {"usage.output_tokens": "many"}),
    "azure": ({"choices.0.message.content": 7}, {"usage.completion_tokens": "many"}),
    "azure-responses": ({"output.0.content.0.text": 7}, {"usage.output_tokens": "many"}),
    "mistral": ({"choices.0.message.content": 7}, {"usage.completion_tokens": "many"}),
    "anthropic": ({"content.0.text": 7}, {"usage.output_tokens": "many"}),
    "gemini": ({"candidates.0.content.parts.0.text": 7}, {"usageMetadata.candidatesTokenCount": "many"}),
}


@pytest.mark.parametrize("which", [0, 1], ids=["text", "tokens"])
def test_a_reply_with_a_field_of_the_wrong_type_is_a_retried_row_error(vendor, sim, which):
    from llmframe.testing import Faults

    sim.faults = Faults(retyped_rate=1.0, retyped=MISTYPED[vendor.prefix][which])
    out = vendor(frame(), "{q}", max_attempts=2)
    assert out["response"].isna().all() and sim.count == 6
    assert out["response_error"].str.startswith("malformed response").all(), out["response_error"].tolist()
    assert out["response_error"].str.endswith("(after 2 attempts)").all()


def test_half_a_surrogate_pair_in_an_answer_is_repaired_not_a_crash(vendor, sim):
    from llmframe.testing import Faults

    path = next(iter(MISTYPED[vendor.prefix][0]))
    sim.faults = Faults(retyped_rate=1.0, retyped={path: "cut \ud83d"})
    out = vendor(frame(), "{q}")
    assert out["response"].tolist() == ["cut \ufffd"] * 3 and out["response_error"].isna().all()


def test_a_server_error_that_blames_the_request_is_not_retried(vendor, sim):
    from llmframe.testing import Faults

    sim.faults = Faults(refused_formats=frozenset({"json_schema"}))
    out = vendor(frame(), "Judge {q}", output=Verdict)
    assert sim.count == 3 and out["verdict_error"].str.contains("Input should be 'text' or 'json_object'").all()


def test_structured_json_object_puts_the_schema_in_the_prompt(vendor, sim):
    from llmframe.testing import Faults

    sim.faults = Faults(refused_formats=frozenset({"json_schema"}))
    seen = []
    sim.answer = lambda body: seen.append(body) or '{"label": "fine", "score": 3}'
    out = vendor(frame(), "Judge {q}", output=Verdict, structured="json_object")
    assert out["verdict_error"].isna().all() and out["score"].tolist() == [3, 3, 3] and sim.count == 3
    # OpenAI's and Gemini's JSON mode; Anthropic has none: the schema in the prompt is the request.
    expected = None if vendor.prefix == "anthropic" else {"type": "json_object"}
    assert all(body.get("response_format") == expected for body in seen)
    assert all('"score"' in body["messages"][-1]["content"] for body in seen)


def test_a_missing_key_fails_before_any_request(vendor, sim):
    with pytest.raises(ConfigError, match="no API key"):
        vendor(frame(), "{q}", api_key=None)
    assert sim.count == 0


def test_a_bad_key_stops_the_run(vendor, sim):
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(401, "invalid key"))
    with pytest.raises(RunAborted, match="refused the API key"):
        vendor(pd.DataFrame({"q": [f"q{i}" for i in range(200)]}), "{q}", max_concurrency=4)
    assert sim.count <= 12


def test_the_key_never_reaches_the_cache_report_or_errors(vendor, sim, cache_dir):
    secret = "sk-conformance-SECRET-0123456789"
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(403, f"caller {secret} may not use this model"))
    failed = vendor(frame(), "{q}", api_key=secret)
    sim.answer = lambda body: "fine"
    answered = vendor(frame(), "again {q}", api_key=secret)
    written = b"".join(p.read_bytes() for p in cache_dir.rglob("*") if p.is_file())
    text = failed.to_json() + answered.to_json() + repr(failed.attrs) + repr(answered.attrs)
    assert "SECRET" not in text and b"SECRET" not in written
    assert failed["response_error"].str.contains("may not use this model").all()


def test_a_missing_sdk_names_the_extra_to_install(vendor, sim, monkeypatch):
    import sys

    from llmframe.providers import BUILTINS

    module = BUILTINS[vendor.provider].split(":")[0]
    sdk = {"openai": "openai", "azure": "openai", "anthropic": "anthropic", "gemini": "google.genai",
           "mistral": "mistralai.client"}[vendor.provider]
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, sdk, None)  # what an environment without the SDK looks like to import
    with pytest.raises(ConfigError, match=rf"pip install 'llmframe\[{vendor.provider}\]'"):
        vendor(frame(), "{q}")
    assert sim.count == 0


def test_a_reply_trickling_in_times_out_at_timeout(vendor, sim):
    from llmframe.testing import Faults

    sim.faults = Faults(drip_rate=1.0)  # a byte every 0.05 s: no read waits long, the whole reply takes seconds
    out = vendor(frame().head(1), "{q}", timeout=0.5, max_attempts=1)
    assert out["response_error"].tolist() == ["request timed out"]


def test_a_spent_quota_stops_the_run_at_once(vendor, sim):
    from llmframe.testing import Faults

    sim.faults = Faults(quota_rate=1.0)
    many = pd.DataFrame({"q": [f"q{i}" for i in range(200)]})
    if vendor.prefix == "gemini":  # Google's quota 429 reads like its rate limit: the storm bound stops the run
        with pytest.raises(RunAborted, match="no request has been answered for .*You exceeded your current quota"):
            vendor(many, "{q}", max_concurrency=4, max_wait=1)
        return
    with pytest.raises(RunAborted, match="quota or credit is spent"):
        vendor(many, "{q}", max_concurrency=4)
    assert sim.count <= 12, "not retried like a rate limit"
