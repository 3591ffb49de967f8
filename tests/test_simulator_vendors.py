"""The simulator's Anthropic and Gemini routes, through the real anthropic and google-genai SDKs."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import jsonschema
import pytest
from pydantic import BaseModel, Field

from llmframe.testing import Faults, Simulator, default_answer, digest_answer
from llmframe.testing.schema_answers import instance
from llmframe.testing.gemini_generate import openapi_to_json_schema

anthropic = pytest.importorskip("anthropic")
genai = pytest.importorskip("google.genai")
types = pytest.importorskip("google.genai.types")
genai_errors = pytest.importorskip("google.genai.errors")

pytestmark = pytest.mark.timeout(60)


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)
    tags: list[str]


def claude(sim: Simulator, **kwargs) -> anthropic.Anthropic:
    """An anthropic client for a simulator, without retries so errors surface at once."""
    options = {"base_url": sim.anthropic_base_url, "api_key": sim.api_key, "max_retries": 0}
    return anthropic.Anthropic(**{**options, **kwargs})


def gemini(sim: Simulator, headers: dict | None = None) -> genai.Client:
    """A google-genai client for a simulator, without retries."""
    options = types.HttpOptions(
        base_url=sim.gemini_base_url, retry_options=types.HttpRetryOptions(attempts=1), headers=headers
    )
    return genai.Client(api_key=sim.api_key, http_options=options)


def ask_claude(sim: Simulator, prompt: str, **kwargs):
    messages = [{"role": "user", "content": prompt}]
    max_tokens = kwargs.pop("max_tokens", 200)
    return claude(sim).messages.create(model="sim-model", max_tokens=max_tokens, messages=messages, **kwargs)


def ask_gemini(sim: Simulator, prompt: str, **config):
    client = gemini(sim)  # held: a genai.Client closes its HTTP client when it is garbage-collected
    return client.models.generate_content(
        model="sim-model", contents=prompt, config=types.GenerateContentConfig(**config) if config else None
    )


def test_text_answers_are_the_digest_on_every_route(llm_simulator):
    sim = llm_simulator
    # anthropic 2.x dropped temperature and top_p from messages.create's keywords; the API still takes them.
    sampling = {"temperature": 0.5, "top_p": 0.9}
    reply = ask_claude(sim, "hello", system="be brief", stop_sequences=["END"], extra_body=sampling)
    assert reply.content[0].text == digest_answer("hello")
    assert reply.stop_reason == "end_turn" and reply.id.startswith("msg_sim_")
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    response = ask_gemini(sim, "hello", system_instruction="be brief", temperature=0.5, top_p=0.9, seed=3)
    assert response.text == digest_answer("hello")
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    paths = [entry.path for entry in sim.requests]
    assert paths == ["/v1/messages", "/v1/models/sim-model:generateContent"]
    assert sim.count == 2
    assert sim.requests[0].body["system"] == "be brief"  # the raw body is kept
    assert sim.requests[0].chat["temperature"] == 0.5 and sim.requests[0].chat["stop"] == ["END"]
    assert sim.requests[1].body["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert [m["role"] for m in sim.requests[1].chat["messages"]] == ["system", "user"]


def test_multi_turn_answers_the_last_user_message(llm_simulator):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "sec"}, {"type": "text", "text": "ond"}]},
    ]
    reply = claude(llm_simulator).messages.create(model="m", max_tokens=50, messages=messages)
    assert reply.content[0].text == digest_answer("second")
    contents = [
        types.Content(role="user", parts=[types.Part(text="first")]),
        types.Content(role="model", parts=[types.Part(text="ok")]),
        types.Content(role="user", parts=[types.Part(text="second")]),
    ]
    client = gemini(llm_simulator)
    assert client.models.generate_content(model="m", contents=contents).text == digest_answer("second")


def test_max_tokens_truncates(llm_simulator):
    reply = ask_claude(llm_simulator, "hello", max_tokens=2)
    assert reply.stop_reason == "max_tokens" and reply.content[0].text == digest_answer("hello")[:8]
    response = ask_gemini(llm_simulator, "hello", max_output_tokens=2)
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.text == digest_answer("hello")[:8]


def test_structured_output_conforms(llm_simulator):
    sim = llm_simulator
    schema = Person.model_json_schema()
    parsed = claude(sim).messages.parse(
        model="m", max_tokens=500, messages=[{"role": "user", "content": "who?"}], output_format=Person
    )
    assert isinstance(parsed.parsed_output, Person)
    jsonschema.validate(json.loads(parsed.content[0].text), schema)
    response = ask_gemini(sim, "who?", response_mime_type="application/json", response_schema=Person)
    assert isinstance(response.parsed, Person)
    # Gemini's OpenAPI-subset schema ("OBJECT", "STRING") and plain JSON Schema both work.
    response = ask_gemini(sim, "who?", response_mime_type="application/json", response_json_schema=schema)
    jsonschema.validate(json.loads(response.text), schema)
    assert "responseJsonSchema" in sim.requests[-1].body["generationConfig"]
    # The same conversation gets the same structured answer on every route.
    assert response.text == default_answer(sim.requests[-1].chat)
    assert parsed.content[0].text == default_answer(sim.requests[0].chat)
    assert sim.requests[0].chat["response_format"]["type"] == "json_schema"


def test_openapi_schema_translation():
    schema = {
        "type": "OBJECT",
        "properties": {
            "kind": {"type": "STRING", "enum": ["a", "b"]},
            "items": {"type": "ARRAY", "items": {"type": "INTEGER"}, "minItems": "1"},
            "note": {"type": "STRING", "nullable": True},
        },
        "required": ["kind", "items"],
        "propertyOrdering": ["kind", "items", "note"],
    }
    translated = openapi_to_json_schema(schema)
    assert translated["properties"]["items"] == {"type": "array", "items": {"type": "integer"}, "minItems": 1}
    assert translated["properties"]["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    for seed in ("a", "b", "c"):
        jsonschema.validate(instance(translated, seed), translated)


def test_forced_tool_call(llm_simulator):
    tool = {"name": "record_person", "description": "Record a person", "input_schema": Person.model_json_schema()}
    reply = claude(llm_simulator).messages.create(
        model="m",
        max_tokens=500,
        messages=[{"role": "user", "content": "who?"}],
        tools=[tool],
        tool_choice={"type": "tool", "name": "record_person"},
    )
    block = reply.content[0]
    assert block.type == "tool_use" and block.name == "record_person" and reply.stop_reason == "tool_use"
    Person.model_validate(block.input)
    assert block.input == instance(tool["input_schema"], "who?")


def test_one_answer_function_serves_every_route():
    seen = []

    def answer(body: dict) -> str:
        seen.append(body)
        return f"{body['model']}:{body['messages'][-1]['content']}:{body.get('max_tokens')}"

    with Simulator(answer=answer) as sim:
        assert ask_claude(sim, "x", max_tokens=50).content[0].text == "sim-model:x:50"
        assert ask_gemini(sim, "x", max_output_tokens=50).text == "sim-model:x:50"
    assert all(set(body) >= {"model", "messages"} for body in seen)


def test_missing_key_is_an_authentication_error(llm_simulator):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        # An empty api_key is refused by httpx ("Bearer " is an illegal header value): omit the header instead.
        claude(llm_simulator, default_headers={"Authorization": anthropic.omit}).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["error"]["type"] == "authentication_error"
    client = gemini(llm_simulator, headers={"x-goog-api-key": ""})
    with pytest.raises(genai_errors.ClientError) as caught_g:
        client.models.generate_content(model="m", contents="x")
    assert caught_g.value.code == 403 and caught_g.value.status == "PERMISSION_DENIED"
    assert llm_simulator.count == 0


def raw_post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    """POST a JSON body; return (status, parsed JSON answer)."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", **headers}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_missing_max_tokens_is_400(llm_simulator):
    url = llm_simulator.anthropic_base_url + "/v1/messages"
    status, body = raw_post(url, {"model": "m", "messages": [{"role": "user", "content": "x"}]}, {"x-api-key": "k"})
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    status, body = raw_post(url, {"model": "m", "max_tokens": 5, "messages": []}, {})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    status, body = raw_post(url, request, {"x-api-key": "k"})
    assert status == 200 and body["content"][0]["text"] == digest_answer("x")


def test_injected_rate_limit_is_the_sdk_rate_limit_error(llm_simulator):
    llm_simulator.faults = Faults(error_rates={429: 1.0}, retry_after=2.0)
    with pytest.raises(anthropic.RateLimitError) as caught:
        ask_claude(llm_simulator, "x")
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(genai_errors.ClientError) as caught_g:
        ask_gemini(llm_simulator, "x")
    error = caught_g.value
    assert error.code == 429 and error.status == "RESOURCE_EXHAUSTED"
    assert error.response.headers["retry-after"] == "2"
    assert error.details["error"]["details"][0]["retryDelay"] == "2s"


def test_overloaded_is_529(llm_simulator):
    llm_simulator.faults = Faults(error_rates={529: 1.0})
    with pytest.raises(anthropic.OverloadedError):
        ask_claude(llm_simulator, "x")
    llm_simulator.faults = Faults(error_rates={503: 1.0})
    with pytest.raises(genai_errors.ServerError) as caught:
        ask_gemini(llm_simulator, "x")
    assert caught.value.status == "UNAVAILABLE"


def test_rpm_sends_anthropic_ratelimit_headers(llm_simulator):
    llm_simulator.faults = Faults(rpm=2, tpm=100_000)
    raw = claude(llm_simulator).messages.with_raw_response.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    headers = raw.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert headers["anthropic-ratelimit-tokens-limit"] == "100000"
    reset = dt.datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
    assert reset.tzinfo is not None
    assert "x-ratelimit-limit-requests" not in headers
    ask_claude(llm_simulator, "y")
    with pytest.raises(anthropic.RateLimitError) as caught:
        ask_claude(llm_simulator, "z")
    assert caught.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    with pytest.raises(genai_errors.ClientError) as caught_g:  # the same key, the same bucket
        ask_gemini(llm_simulator, "z")
    assert caught_g.value.code == 429
    assert [entry.fault for entry in llm_simulator.requests] == [None, None, "rpm", "rpm"]


def test_body_faults_in_vendor_shapes(llm_simulator):
    llm_simulator.faults = Faults(empty_choices_rate=1.0)
    assert ask_claude(llm_simulator, "x").content == []
    assert not ask_gemini(llm_simulator, "x").candidates
    llm_simulator.faults = Faults(schema_violation_rate=1.0)
    schema = Person.model_json_schema()
    response = ask_gemini(llm_simulator, "who?", response_mime_type="application/json", response_json_schema=schema)
    with pytest.raises(Exception):
        Person.model_validate_json(response.text)
    assert llm_simulator.stats()["faults"] == {"empty_choices": 2, "schema_violation": 1}


def test_async_clients(llm_simulator):
    async def main():
        client = anthropic.AsyncAnthropic(base_url=llm_simulator.anthropic_base_url, api_key="k", max_retries=0)
        messages = [[{"role": "user", "content": p}] for p in "abc"]
        asks = [client.messages.create(model="m", max_tokens=50, messages=m) for m in messages]
        replies = await asyncio.gather(*asks)
        await client.close()
        g = gemini(llm_simulator)
        responses = await asyncio.gather(*[g.aio.models.generate_content(model="m", contents=p) for p in "abc"])
        await g.aio.aclose()
        return [r.content[0].text for r in replies], [r.text for r in responses]

    texts, gtexts = asyncio.run(main())
    assert texts == gtexts == [digest_answer(p) for p in "abc"]
    assert llm_simulator.count == 6


def test_v1beta_route_and_query_key(llm_simulator):
    url = f"{llm_simulator.gemini_base_url}/v1beta/models/m:generateContent"
    status, body = raw_post(url + "?key=abc", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, {})
    assert status == 200
    assert body["candidates"][0]["content"]["parts"][0]["text"] == digest_answer("hi")
    assert body["modelVersion"] == "m"
    status, body = raw_post(url, {"contents": []}, {"x-goog-api-key": "abc"})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
