"""Content keys and parameter validation: pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from llmframe.errors import ConfigError, redact
from llmframe.plan.request import (
    Keys,
    Response,
    canonical_json,
    content_digests,
    distinct,
    generation_params,
    key_prefix,
)
from llmframe.plan.request import integer_at_least, positive_number
from llmframe.plan.request import content_key as _content_key

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


def test_numpy_numbers_are_numbers_and_give_the_same_key():
    numpy = generation_params(temperature=np.float32(0.5), top_p=np.float64(1), max_tokens=np.int64(5),
                              seed=np.uint8(7))
    plain = generation_params(temperature=0.5, top_p=1, max_tokens=5, seed=7)
    assert numpy == plain and [type(numpy[k]) for k in ("max_tokens", "seed")] == [int, int]
    assert key_prefix("openai", "m", numpy) == key_prefix("openai", "m", plain)  # JSON-serialisable, same key
    assert type(integer_at_least("n", np.int32(3), 1)) is int and positive_number("t", np.float32(2)) == 2.0
    for bad in (np.bool_(True), np.float64("nan"), np.int64(0)):
        with pytest.raises(ConfigError, match="max_tokens must be an integer >= 1"):
            generation_params(max_tokens=bad)
    with pytest.raises(ConfigError, match="must be a number > 0"):
        positive_number("timeout", np.float64("inf"))


def test_response_round_trips_through_the_cache_format():
    response = Response(text="é\n\"q\"", input_tokens=3, output_tokens=4, finish_reason="length")
    (back,) = Response.many_from_cache([response.to_cache("openai:m", 1.5)])
    assert (back.text, back.input_tokens, back.output_tokens, back.finish_reason) == ("é\n\"q\"", 3, 4, "length")
    assert back.cached and not response.cached


def test_redact_removes_keys_whole_or_masked():
    assert redact("bad key my-secret-key", "my-secret-key") == "bad key ***"
    assert "sk-" not in redact("Incorrect API key provided: sk-proj-ab12***********xy9Z.")
    assert redact("nothing to hide") == "nothing to hide"


def test_digests_spell_the_same_keys_as_content_key():
    prefix = key_prefix("openai", "m", {})
    texts = [canonical_json([{"role": "user", "content": t}]) for t in ("a", "é 👋", "")]
    raw = np.frombuffer(b"".join(content_digests(prefix, texts)), dtype=np.uint64).reshape(-1, 2)
    keys = Keys(raw)
    assert list(keys) == [_content_key(prefix, t) for t in texts]
    assert keys[1:] == [_content_key(prefix, t) for t in texts[1:]]
    assert keys.take([2, 0]) == [keys[2], keys[0]]
    assert Keys.from_hex(list(keys)).digests.tolist() == raw.tolist()


def test_distinct_keeps_first_seen_order_and_skips_invalid_rows():
    digests = np.array([[7, 1], [3, 2], [7, 1], [9, 9], [3, 2]], dtype=np.uint64)
    valid = np.array([True, True, True, False, True])
    row_to_key, first = distinct(digests, valid)
    assert row_to_key.tolist() == [0, 1, 0, -1, 1]
    assert first.tolist() == [0, 1]


def test_distinct_settles_a_64_bit_collision_on_all_128_bits():
    # Rows 0 and 2 share their first word but are different keys: the fast path must not merge them.
    digests = np.array([[5, 1], [6, 0], [5, 2], [5, 1], [6, 0]], dtype=np.uint64)
    row_to_key, first = distinct(digests, np.ones(5, dtype=bool))
    assert row_to_key.tolist() == [0, 1, 2, 0, 1]
    assert first.tolist() == [0, 1, 2]


@pytest.mark.parametrize("distinct_share", [1.0, 0.5, 0.01])
def test_distinct_numbers_keys_as_pandas_factorize_did(distinct_share):
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 20_000
    pool = rng.integers(0, 2**63, (max(1, int(n * distinct_share)), 2), dtype=np.uint64)
    digests = pool if distinct_share == 1.0 else pool[rng.integers(0, len(pool), n)]
    valid = rng.random(len(digests)) > 0.1
    row_to_key, first = distinct(digests, valid)
    codes, _ = pd.factorize(digests[valid, 0])
    assert row_to_key[valid].tolist() == codes.tolist() and (row_to_key[~valid] == -1).all()
    assert first.tolist() == np.flatnonzero(valid)[np.unique(codes, return_index=True)[1]].tolist()


# Keys of whole runs, as plan() makes them (it sends nothing): the endpoint and strict where they matter.

def _plan_key(model="openai:gpt-4o-mini", **kwargs):
    import pandas as pd
    from pydantic import BaseModel

    from llmframe.faces.frames import rows_of
    from llmframe.faces.planning import plan

    class Verdict(BaseModel):
        label: str
        score: int

    if kwargs.pop("structured", False):
        kwargs["output"] = Verdict
    kwargs.setdefault("temperature", 0)
    return plan(rows_of(pd.DataFrame({"x": ["hello"]})), "Say {x}", model=model, api_key="sk-test", cache=False, **kwargs).keys[0]


# Computed before the endpoint and strict were part of any key: caches made then must stay valid.
PINNED = {
    "openai:gpt-4o-mini": "3c17b18f714788de16eefab244de302e",
    "anthropic:claude-3-5-haiku-latest": "59740c5a11d4695a7b88464e812690de",
    "gemini:gemini-2.0-flash": "92dffcc45e37f5590c1eadd8c47cd6ee",
}


@pytest.mark.parametrize("model", sorted(PINNED))
def test_keys_for_the_official_endpoints_never_drift(model, monkeypatch):
    for name in ("ANTHROPIC_BASE_URL", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert _plan_key(model) == PINNED[model]


def test_structured_keys_for_the_official_endpoint_never_drift():
    # strict=True, the default; no temperature
    assert _plan_key(structured=True, temperature=None) == "ea7dedcc13c5f77b8c91523563ab911a"


def test_the_official_endpoint_spelled_out_keeps_the_key(monkeypatch):
    official = PINNED["openai:gpt-4o-mini"]
    assert _plan_key(base_url="https://api.openai.com/v1/") == official
    monkeypatch.setenv("OPENAI_BASE_URL", "HTTPS://API.OPENAI.COM/v1")
    assert _plan_key() == official


@pytest.mark.parametrize("model, variable", [("openai:m", "OPENAI_BASE_URL"), ("anthropic:m", "ANTHROPIC_BASE_URL"),
                                             ("gemini:m", "GOOGLE_GEMINI_BASE_URL")])
def test_another_endpoint_is_in_the_key_however_it_is_given(model, variable, monkeypatch):
    monkeypatch.delenv(variable, raising=False)
    official = _plan_key(model)
    here = _plan_key(model, base_url="http://127.0.0.1:8000/v1")
    assert here != official
    assert _plan_key(model, base_url="http://127.0.0.1:8000/v1/") == here, "a trailing slash is the same endpoint"
    assert _plan_key(model, base_url="http://127.0.0.1:8001/v1") != here
    monkeypatch.setenv(variable, "http://127.0.0.1:8000/v1/")
    assert _plan_key(model) == here, "the environment's endpoint is the same endpoint as base_url="


def test_strict_is_in_the_key_where_it_changes_the_request():
    assert _plan_key(structured=True, strict=False) != _plan_key(structured=True)
    # Anthropic's request is the same either way: the key too.
    claude = "anthropic:claude-3-5-haiku-latest"
    assert _plan_key(claude, structured=True, strict=False) == _plan_key(claude, structured=True)
    with pytest.raises(ConfigError, match="strict must be True or False"):
        _plan_key(structured=True, strict="no")
