"""Content keys and parameter validation: pure functions."""

from __future__ import annotations

import pytest

from llmframe.errors import ConfigError, redact
from llmframe.request import Response, canonical_json, generation_params, key_prefix
from llmframe.request import content_key as _content_key

MESSAGES = [{"role": "user", "content": "hi"}]


def content_key(prefix, messages):
    return _content_key(prefix, canonical_json(messages))


def test_key_is_stable_and_order_insensitive():
    a = content_key(key_prefix("openai", "m", {"temperature": 0, "seed": 1}), MESSAGES)
    b = content_key(key_prefix("openai", "m", {"seed": 1, "temperature": 0}), [{"content": "hi", "role": "user"}])
    assert a == b and len(a) == 32


@pytest.mark.parametrize(
    "other",
    [
        ("anthropic", "m", {"temperature": 0, "seed": 1}, MESSAGES),
        ("openai", "m2", {"temperature": 0, "seed": 1}, MESSAGES),
        ("openai", "m", {"temperature": 0.1, "seed": 1}, MESSAGES),
        ("openai", "m", {"temperature": 0}, MESSAGES),
        ("openai", "m", {"temperature": 0, "seed": 1}, [{"role": "user", "content": "hi "}]),
        ("openai", "m", {"temperature": 0, "seed": 1}, [{"role": "system", "content": "hi"}]),
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(other):
    provider, model, params, messages = other
    base = content_key(key_prefix("openai", "m", {"temperature": 0, "seed": 1}), MESSAGES)
    assert content_key(key_prefix(provider, model, params), messages) != base


def test_schema_is_part_of_the_key():
    assert content_key(key_prefix("openai", "m", {}, {"type": "object"}), MESSAGES) != content_key(
        key_prefix("openai", "m", {}), MESSAGES
    )


def test_params_keep_only_what_was_set():
    assert generation_params() == {}
    assert generation_params(temperature=0, stop="END", params={"logprobs": True}) == {
        "temperature": 0,
        "stop": ["END"],
        "logprobs": True,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": float("nan")},
        {"temperature": True},
        {"top_p": -0.1},
        {"max_tokens": 1.5},
        {"seed": "1"},
        {"stop": ""},
        {"stop": ["a", 3]},
        {"params": {"messages": []}},
        {"params": ["x"]},
    ],
)
def test_invalid_params_are_refused(kwargs):
    with pytest.raises(ConfigError):
        generation_params(**kwargs)


def test_response_round_trips_through_the_cache_format():
    response = Response(text="é\n\"q\"", input_tokens=3, output_tokens=4, finish_reason="length")
    (back,) = Response.many_from_cache([response.to_cache("openai:m", 1.5)])
    assert (back.text, back.input_tokens, back.output_tokens, back.finish_reason) == ("é\n\"q\"", 3, 4, "length")
    assert back.cached and not response.cached


def test_redact_removes_keys_whole_or_masked():
    assert redact("bad key my-secret-key", "my-secret-key") == "bad key ***"
    assert "sk-" not in redact("Incorrect API key provided: sk-proj-ab12***********xy9Z.")
    assert redact("nothing to hide") == "nothing to hide"
