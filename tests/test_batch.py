"""Native batch mode against the simulator's batch APIs, through the official SDKs over real HTTP."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

import llmframe
from llmframe.apps import cli
from llmframe import constants
from llmframe.batch import openai as openai_batches
from llmframe.batch.anthropic import parse_results as anthropic_results
from llmframe.batch.gemini import parse_results as gemini_results
from llmframe.batch.runner import first_polls, job_id
from llmframe.batch.split import split
from llmframe.errors import BudgetExceeded, ConfigError
from llmframe.plan.request import Response
from llmframe.providers import provider_class
from llmframe.testing import digest_answer
from llmframe.testing.batches import BatchSettings

PROVIDERS = ("openai", "anthropic", "gemini", "mistral")


def wait_until(condition, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def frame(n: int, tag: str = "row") -> pd.DataFrame:
    return pd.DataFrame({"x": [f"{tag} {i}" for i in range(n)]})


def expected(n: int, tag: str = "row") -> list[str]:
    return [digest_answer(f"{tag} {i}") for i in range(n)]


@pytest.fixture
def batch(sim):
    """Call obj.llm.generate (or submit) on a provider of the simulator, polling fast."""
    sim.batches.settings = BatchSettings(seconds=0.1)
    urls = {"openai": sim.base_url, "anthropic": sim.anthropic_base_url, "gemini": sim.gemini_base_url,
            "mistral": sim.mistral_base_url}

    def call(obj, provider="openai", *, method="generate", template="{x}", **kwargs):
        kwargs.setdefault("model", f"{provider}:sim-model")
        kwargs.setdefault("base_url", urls[provider])
        kwargs.setdefault("api_key", sim.api_key)
        kwargs.setdefault("progress", False)
        kwargs.setdefault("poll_interval", 0.02)
        if method == "generate":
            kwargs.setdefault("mode", "batch")
        return getattr(obj.llm, method)(template, **kwargs)

    return call


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_run_end_to_end_then_online_run_hits_the_cache(batch, sim, provider):
    df = frame(30)
    out = batch(df, provider)
    assert out["response"].tolist() == expected(30)
    assert out["response_error"].isna().all()
    report = out.attrs["llmframe"]
    assert report["mode"] == "batch" and report["batch_job"].startswith("lf-")
    assert report["requests_sent"] == 30 and report["cached"] == 0 and report["input_tokens"] > 0
    assert [(c.vendor, c.requests) for c in sim.batches.created] == [(provider, 30)]
    assert sim.count == 0  # nothing went through the online API
    online = batch(df, provider, mode="online")
    assert online["response"].tolist() == expected(30)
    assert online.attrs["llmframe"]["cached"] == 30 and sim.count == 0
    again = batch(df, provider)  # the same batch call: all from the cache, no new batch
    assert again.attrs["llmframe"]["cached"] == 30 and len(sim.batches.created) == 1


def test_batch_answers_are_marked_as_batch_in_the_cache(batch, cache_dir):
    from llmframe.stores.diskcache import open_store

    out = batch(frame(3))
    store = open_store(cache_dir)
    values = [v for _k, v in store._entries()]
    assert len(values) == 3 and all(r.batch for r in Response.many_from_cache(values))
    assert out.attrs["llmframe"]["output_tokens"] > 0  # usage comes back, for pricing


def test_cached_rows_are_not_submitted(batch, gen, sim):
    df = frame(40)
    gen(df.iloc[:25], "{x}")  # online first: 25 answers cached
    assert sim.count == 25
    out = batch(df)
    assert out["response"].tolist() == expected(40)
    assert [c.requests for c in sim.batches.created] == [15]
    assert out.attrs["llmframe"]["cached"] == 25


def test_split_by_request_count(batch, sim, monkeypatch):
    monkeypatch.setattr(provider_class("openai"), "batch_limits", (7, 10**9))
    out = batch(frame(20))
    assert out["response"].tolist() == expected(20)
    assert sorted(c.requests for c in sim.batches.created) == [6, 7, 7]
    assert len({c.tag for c in sim.batches.created}) == 3  # each chunk tagged with its own id


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_split_by_bytes(batch, sim, monkeypatch, provider):
    one = len(sim.batches.created)
    limit = 1000
    monkeypatch.setattr(provider_class(provider), "batch_limits", (10**6, limit))
    out = batch(frame(12, "a longer prompt, so that only a few lines fit in a thousand bytes:"), provider)
    assert out["response_error"].isna().all()
    sizes = [c.requests for c in sim.batches.created[one:]]
    assert len(sizes) > 1 and sum(sizes) == 12


def test_split_keeps_every_chunk_within_both_limits():
    lines = {str(i): "x" * (10 + i % 7) for i in range(100)}
    groups = list(split(lines.items(), 9, 60))
    assert [i for g, _ in groups for i in g] == list(lines)
    for group, text in groups:
        assert len(group) <= 9 and sum(len(t) + 1 for t in text) <= 60
        assert text == [lines[i] for i in group]
    with pytest.raises(ConfigError, match="over the provider's batch limit"):
        list(split([("0", "y" * 100)], 9, 60))


def test_gemini_large_jobs_go_as_an_uploaded_file(batch, sim, monkeypatch):
    monkeypatch.setattr(constants, "GEMINI_INLINE_BYTES", 10)
    out = batch(frame(10), "gemini")
    assert out["response"].tolist() == expected(10)
    assert [(c.vendor, c.file) for c in sim.batches.created] == [("gemini", True)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_failed_lines_become_row_errors_and_a_rerun_resubmits_only_them(batch, sim, provider):
    sim.batches.settings = BatchSettings(seconds=0.05, error_rate=0.3)
    df = frame(40)
    out = batch(df, provider)
    failed = out["response_error"].notna()
    assert 0 < failed.sum() < 40
    assert out.loc[~failed, "response"].tolist() == [a for a, f in zip(expected(40), failed) if not f]
    assert out.loc[failed, "response"].isna().all()
    assert out.attrs["llmframe"]["failed"] == failed.sum()
    sim.batches.settings = BatchSettings(seconds=0.05)
    again = batch(df, provider)
    assert again["response"].tolist() == expected(40)
    assert [c.requests for c in sim.batches.created] == [40, failed.sum()]


def test_retry_online_answers_failed_lines_online(batch, sim):
    sim.batches.settings = BatchSettings(seconds=0.05, error_rate=0.3)
    out = batch(frame(40), retry_online=True)
    assert out["response"].tolist() == expected(40)
    assert 0 < sim.count < 40  # only the failed lines went online


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_job_keeps_its_partial_results(batch, sim, provider):
    sim.batches.settings = BatchSettings(seconds=1.0, expire_after=0.4)
    df = frame(50)
    out = batch(df, provider)
    answered = out["response_error"].isna()
    assert 0 < answered.sum() < 50
    assert out.loc[answered, "response"].tolist() == [a for a, ok in zip(expected(50), answered) if ok]
    assert out.loc[~answered, "response_error"].str.contains("expired").all()
    sim.batches.settings = BatchSettings(seconds=0.05)
    again = batch(df, provider)  # only the expired rows go again
    assert again["response"].tolist() == expected(50)
    assert [c.requests for c in sim.batches.created] == [50, 50 - answered.sum()]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_submit_status_cancel_then_rerun_resubmits_only_the_unfinished(batch, sim, provider):
    sim.batches.settings = BatchSettings(seconds=6.0)
    df = frame(60)
    job = batch(df, provider, method="submit")
    assert job.id.startswith("lf-") and repr(job).startswith("BatchJob(")
    status = job.status()
    assert status["status"] == "running" and status["chunks"][0]["batch_id"]
    again = batch(df, provider, method="submit")  # the same call: re-attached, nothing new created
    assert again.id == job.id and len(sim.batches.created) == 1
    batch_id = status["chunks"][0]["batch_id"]
    wait_until(lambda: sim.batches.state(batch_id)[1] >= 5)  # part of the batch is done: now cancel it
    assert job.cancel() == [batch_id]
    out = job.result()
    answered = out["response_error"].isna()
    assert 0 < answered.sum() < 60
    assert out.loc[~answered, "response_error"].str.contains("cancelled").all()
    sim.batches.settings = BatchSettings(seconds=0.05)
    rerun = batch(df, provider)
    assert rerun["response"].tolist() == expected(60)
    assert [c.requests for c in sim.batches.created] == [60, 60 - answered.sum()]


def test_submit_result_equals_generate(batch, sim):
    df = frame(10)
    job = batch(df, method="submit")
    out = job.result()
    assert out["response"].tolist() == expected(10)
    assert job.status()["status"] == "done"
    with pytest.raises(ConfigError, match="partial=True is for online jobs"):
        job.result(partial=True)
    online = batch(df, method="submit", mode="online")  # the same handle, a background run (test_background.py)
    assert online.result()["response"].tolist() == out["response"].tolist()
    assert online.result().attrs["llmframe"]["mode"] == "online" and job in llmframe.jobs()


def test_batches_lists_jobs_and_cancel_by_prefix_and_all(batch, sim, cache_dir, capsys, monkeypatch):
    sim.batches.settings = BatchSettings(seconds=30.0)
    first = batch(frame(5, "a"), method="submit")
    second = batch(frame(5, "b"), method="submit")
    listed = {j["id"]: j for j in llmframe.batches()}
    assert set(listed) == {first.id, second.id}
    assert all(j["status"] == "running" and j["model"] == "openai:sim-model" for j in listed.values())
    assert cli.main(["batches", "status"]) == 0
    text = capsys.readouterr().out
    assert first.id in text and second.id in text and "0/5 requests" in text
    monkeypatch.setenv("OPENAI_API_KEY", sim.api_key)  # the CLI reads the key as the SDK does
    assert llmframe.cancel_batches(prefix=first.id) == [first.status()["chunks"][0]["batch_id"]]
    assert cli.main(["batches", "cancel", "--all"]) == 0
    assert "Asked 1 batch to cancel." in capsys.readouterr().out
    assert cli.main(["batches", "cancel"]) == 2  # nothing named
    assert cli.main(["batches", "cancel", "lf-nosuchjob"]) == 2
    assert first.result()["response_error"].str.contains("cancelled").all()
    assert second.result()["response_error"].str.contains("cancelled").all()
    assert {j["status"] for j in llmframe.batches()} == {"done"}
    assert cli.main(["batches", "status", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_api_key_never_reaches_the_state_files(batch, cache_dir):
    secret = "sk-very-secret-batch-key"
    batch(frame(5), api_key=secret)
    files = list((cache_dir / constants.BATCH_STATE_DIR).rglob("*"))
    assert any(f.suffix == ".json" for f in files)
    assert all(secret not in f.read_text() for f in files if f.is_file())


def test_bad_batch_options_fail_before_sending(batch, sim):
    df = frame(3)
    with pytest.raises(ConfigError, match="mode must be one of"):
        batch(df, mode="later")
    with pytest.raises(ConfigError, match="needs cache=True"):
        batch(df, cache=False)
    with pytest.raises(ConfigError, match="poll_interval"):
        batch(df, poll_interval=0)
    assert sim.count == 0 and sim.batches.created == []


def test_poll_interval_from_the_environment(batch, sim, monkeypatch):
    monkeypatch.setenv(constants.BATCH_POLL_ENV_VAR, "soon")
    with pytest.raises(ConfigError, match=constants.BATCH_POLL_ENV_VAR):
        batch(frame(2), poll_interval=None)
    monkeypatch.setenv(constants.BATCH_POLL_ENV_VAR, "0.02")
    assert batch(frame(2), poll_interval=None)["response"].tolist() == expected(2)
    assert first_polls(30.0) == [1.0, 2.0, 4.0, 8.0, 16.0] and first_polls(0.5) == []


def test_auto_mode_goes_online_for_small_jobs_and_batch_for_large(batch, sim, monkeypatch):
    out = batch(frame(4), mode="auto")
    assert out.attrs["llmframe"]["mode"] == "online" and sim.count == 4 and sim.batches.created == []
    monkeypatch.setattr(constants, "BATCH_AUTO_MIN_REQUESTS", 5)
    out = batch(frame(6, "big"), mode="auto")
    assert out.attrs["llmframe"]["mode"] == "batch" and sim.count == 4
    assert [c.requests for c in sim.batches.created] == [6]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_output_through_a_batch(batch, sim, provider):
    from pydantic import BaseModel

    class Review(BaseModel):
        sentiment: str
        score: int

    out = batch(frame(5), provider, output=Review)
    assert out["sentiment"].notna().all() and str(out["score"].dtype).startswith(("int", "Int"))
    online = batch(frame(5), provider, output=Review, mode="online")
    assert online.attrs["llmframe"]["cached"] == 5 and sim.count == 0


def test_job_id_is_stable_and_depends_on_the_requests():
    assert job_id("openai:m", None, ["a", "b"]) == job_id("openai:m", None, ["a", "b"])
    assert job_id("openai:m", None, ["a", "b"]) != job_id("openai:m", None, ["a", "c"])
    assert job_id("openai:m", None, ["a"]) != job_id("openai:m", "http://elsewhere", ["a"])


def test_result_parsers_map_answers_and_errors_by_custom_id():
    body = {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    text = "\n".join([
        json.dumps({"custom_id": "a", "response": {"status_code": 200, "body": body}, "error": None}),
        json.dumps({"custom_id": "b", "response": {"status_code": 400, "body": {"error": {"message": "bad"}}}}),
        json.dumps({"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "late"}}),
    ])
    answers = "\n".join(json.dumps({"custom_id": k, "response": {"status_code": 200, "body": body}, "error": None})
                        for k in ("x", "y"))
    fast, plain = openai_batches._parse_answers_arrow(answers), openai_batches._parse_lines(answers)
    assert fast is not None and fast == plain and fast["x"].text == "hi"  # pyarrow's parse, and json's, agree
    found = openai_batches.parse_results(text + "\n")
    assert (found["a"].text, found["a"].input_tokens, found["a"].batch) == ("hi", 3, True)
    assert "bad" in found["b"].error and "batch_expired" in found["c"].error
    lines = [{"custom_id": "a", "result": {"type": "succeeded", "message": {
        "content": [{"type": "text", "text": "yo"}], "stop_reason": "max_tokens",
        "usage": {"input_tokens": 2, "output_tokens": 5}}}},
             {"custom_id": "b", "result": {"type": "expired"}}]
    found = anthropic_results("\r\n".join(json.dumps(x) for x in lines))
    assert (found["a"].text, found["a"].finish_reason, found["a"].output_tokens) == ("yo", "length", 5)
    assert "expired" in found["b"].error
    lines = [{"key": "a", "response": {"candidates": [{"content": {"parts": [{"text": "g"}]}, "finishReason": "STOP"}],
                                       "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1}}},
             {"key": "b", "error": {"code": 500, "message": "boom", "status": "INTERNAL"}}]
    found = gemini_results("\n".join(json.dumps(x) for x in lines))
    assert (found["a"].text, found["a"].finish_reason, found["a"].input_tokens) == ("g", "stop", 4)
    assert "boom" in found["b"].error


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_a_run_that_died_before_recording_a_batch_id_finds_the_batch_instead_of_creating_it_again(
        batch, sim, monkeypatch, provider):
    module, _, name = provider_class(provider).batch_adapter.partition(":")
    import importlib

    adapter = getattr(importlib.import_module(module), name)
    real_create = adapter.create

    async def create_then_die(self, uid, lines):
        await real_create(self, uid, lines)  # the provider has the batch ...
        raise RuntimeError("killed")  # ... but the process dies before the id reaches the state file

    monkeypatch.setattr(adapter, "create", create_then_die)
    df = frame(8)
    with pytest.raises(RuntimeError, match="killed"):
        batch(df, provider)
    monkeypatch.setattr(adapter, "create", real_create)
    out = batch(df, provider)
    assert out["response"].tolist() == expected(8)
    assert len(sim.batches.created) == 1  # found by its tag, not created twice


def test_a_call_the_cache_answers_whole_submits_nothing_and_records_no_job(batch, gen, sim):
    df = frame(6)
    gen(df, "{x}")
    out = batch(df)
    assert out["response"].tolist() == expected(6) and out.attrs["llmframe"]["cached"] == 6
    assert sim.batches.created == [] and llmframe.batches() == []


def test_a_batch_job_whose_estimate_exceeds_max_cost_is_not_submitted(batch, sim):
    prices = {"openai:sim-model": {"input_mtok": 1.0, "output_mtok": 4.0, "batch_input_mtok": 0.5,
                                   "batch_output_mtok": 2.0}}
    # 30 requests of up to 100 output tokens at $2 per million: up to $0.006, over a $0.001 cap.
    with pytest.raises(BudgetExceeded, match="nothing was submitted") as caught:
        batch(frame(30), max_tokens=100, max_cost=0.001, prices=prices)
    assert sim.batches.created == [] and sim.count == 0
    assert caught.value.report["estimate"]["uncached_requests"] == 30
    out = batch(frame(30), max_tokens=100, max_cost=0.01, prices=prices, usage=True)  # fits: submitted
    assert len(sim.batches.created) == 1
    report = out.attrs["llmframe"]
    assert report["price"]["batch"] is True and 0 < report["cost"] <= 0.01


def field_order(value) -> list[str] | None:
    """The property names of the first JSON Schema object inside a request, in the order they came."""
    if isinstance(value, dict):
        if isinstance(value.get("properties"), dict):
            return list(value["properties"])
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            if (found := field_order(item)) is not None:
                return found
    return None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_batch_line_carries_the_schema_in_the_users_field_order(batch, sim, provider):
    from pydantic import BaseModel

    class Verdict(BaseModel):  # reasoning first, on purpose: a model writes the fields in the order it is given
        sentiment: str
        score: int
        aardvark: bool

    batch(frame(4), provider, output=Verdict)
    (created,) = sim.batches.created
    received = sim.batches.requests(created.id)
    assert len(received) == 4
    assert all(field_order(request) == ["sentiment", "score", "aardvark"] for request in received), received[0]


def test_a_damaged_state_file_is_named_and_skipped_and_its_call_rebuilds_it(batch, sim, cache_dir, capsys,
                                                                            monkeypatch):
    from llmframe.batch.state import BatchStateWarning

    done_df, running_df = frame(5, "a"), frame(5, "b")
    sim.batches.settings = BatchSettings(seconds=0.05)
    damaged = batch(done_df, method="submit")
    sim.batches.settings = BatchSettings(seconds=30.0)
    running = batch(running_df, method="submit")
    path = cache_dir / constants.BATCH_STATE_DIR / f"{damaged.id}.json"
    path.write_text("")  # what a crash of the file system leaves of a file it had not flushed
    with pytest.warns(BatchStateWarning, match=path.name):
        listed = {j["id"]: j for j in llmframe.batches()}
    assert listed[damaged.id]["status"] == "damaged" and listed[damaged.id]["file"] == str(path)
    assert "rm -r" in listed[damaged.id]["error"] and listed[running.id]["status"] == "running"
    assert cli.main(["batches", "status"]) == 0
    text = capsys.readouterr().out
    assert f"{damaged.id}  damaged:" in text and str(path) in text and running.id in text
    monkeypatch.setenv("OPENAI_API_KEY", sim.api_key)
    with pytest.warns(BatchStateWarning, match=path.name):
        assert cli.main(["batches", "cancel", "--all"]) == 0  # the readable job is still cancelled
    assert "Asked 1 batch to cancel." in capsys.readouterr().out
    with pytest.warns(BatchStateWarning):
        assert cli.main(["batches", "cancel", damaged.id]) == 2
    assert str(path) in capsys.readouterr().err
    # The call that made the damaged job finds its batch again by its tag instead of submitting it twice.
    sim.batches.settings = BatchSettings(seconds=0.05)
    with pytest.warns(BatchStateWarning, match="rebuilt"):
        out = batch(done_df)
    assert out["response"].tolist() == expected(5, "a") and len(sim.batches.created) == 2
    assert {j["id"]: j["status"] for j in llmframe.batches()}[damaged.id] == "done"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_damaged_job_whose_answers_are_all_cached_creates_no_batch_again(batch, sim, cache_dir, provider):
    from llmframe.batch.state import BatchStateWarning

    df = frame(4)
    job = batch(df, provider, method="submit")
    assert job.result()["response"].tolist() == expected(4)
    (cache_dir / constants.BATCH_STATE_DIR / f"{job.id}.json").write_text("{")
    with pytest.warns(BatchStateWarning, match="rebuilt"):
        again = batch(df, provider)
    assert again["response"].tolist() == expected(4) and again.attrs["llmframe"]["cached"] == 4
    assert len(sim.batches.created) == 1  # Anthropic cannot find it by a tag: the cache says it is answered


@pytest.mark.parametrize("text", ["", '{"id": "lf-', '{"id": "x", "chunks": [], "from_the_future": 1}', "[]"])
def test_a_state_file_that_cannot_be_read_raises_one_error_naming_it(cache_dir, text):
    from llmframe.batch.state import DamagedState, StateStore

    states = StateStore(cache_dir)
    states.root.mkdir(parents=True)
    (states.root / "lf-broken.json").write_text(text)
    with pytest.raises(DamagedState, match="lf-broken.json"):
        states.load("lf-broken")
    jobs, damaged = states.scan()
    assert jobs == [] and [d.path.name for d in damaged] == ["lf-broken.json"]


@pytest.mark.parametrize(("provider", "endpoint"), [("openai", "/v1/files"),
                                                    ("anthropic", "/v1/messages/batches"),
                                                    ("gemini", "/models/sim-model:batchGenerateContent")])
def test_a_server_without_a_batch_api_is_named_and_leaves_no_job(batch, sim, cache_dir, monkeypatch, provider,
                                                                  endpoint):
    monkeypatch.setattr(provider_class(provider), "batch_limits", (2, 10**9))  # two chunks: neither may be left behind
    sim.batches.settings = BatchSettings(seconds=0.05, api=False)  # as vLLM and llama.cpp answer: 404
    with pytest.raises(ConfigError, match="has no batch API") as caught:
        batch(frame(3), provider)
    message = str(caught.value)
    assert "mode='online'" in message and "POST http://127.0.0.1:" in message and endpoint in message
    assert llmframe.batches() == []  # nothing was created, so nothing is listed
    assert not any((cache_dir / constants.BATCH_STATE_DIR).rglob("*"))
    sim.batches.settings = BatchSettings(seconds=0.05)
    assert batch(frame(3), provider)["response"].tolist() == expected(3)


def test_a_batch_error_line_says_its_status_once():
    line = {"custom_id": "a", "response": {"status_code": 400, "body": {"error": {
        "message": "max_tokens is too large", "type": "BadRequestError", "param": None, "code": 400}}}}
    found = openai_batches.parse_results(json.dumps(line) + "\n")
    assert found["a"].error == "HTTP 400: BadRequestError: max_tokens is too large"
    line = {"custom_id": "b", "response": {"status_code": 500, "body": {"error": {"message": "boom"}}}}
    assert openai_batches.parse_results(json.dumps(line))["b"].error == "HTTP 500: boom"
    gemini = gemini_results(json.dumps({"key": "c", "error": {"code": 429, "message": "slow down",
                                                               "status": "RESOURCE_EXHAUSTED"}}))
    assert gemini["c"].error == "HTTP 429: RESOURCE_EXHAUSTED: slow down"


@pytest.mark.parametrize("retry_online", [False, True])
def test_batch_answers_that_do_not_validate_are_counted_as_invalid(batch, sim, retry_online):
    from pydantic import BaseModel

    class Review(BaseModel):
        sentiment: str
        score: int

    asked: dict[str, int] = {}

    def answer(body):  # the even rows' first answer lacks a field; any later answer is right
        prompt = body["messages"][-1]["content"]
        asked[prompt] = asked.get(prompt, 0) + 1
        if int(prompt.split()[-1]) % 2 == 0 and asked[prompt] == 1:
            return '{"sentiment": "fine"}'
        return '{"sentiment": "fine", "score": 3}'

    sim.answer = answer
    out = batch(frame(6), output=Review, retry_online=retry_online)
    report = out.attrs["llmframe"]
    assert report["invalid_answers"] == 3
    if retry_online:  # asked again online, where they validate
        assert report["failed"] == 0 and out["score"].tolist() == [3] * 6 and sim.count == 3
    else:  # a batch cannot ask again
        assert report["failed"] == 3 and out["review_error"].notna().sum() == 3


def test_an_empty_batch_answer_is_a_failure_and_not_cached(batch, sim):
    sim.answer = lambda body: "" if body["messages"][-1]["content"] == "row 1" else digest_answer(
        body["messages"][-1]["content"])
    df = frame(3)
    out = batch(df)
    assert out["response"].isna().tolist() == [False, True, False]
    assert out["response_error"].iloc[1] == "empty answer" and out.attrs["llmframe"]["failed"] == 1
    sim.answer = lambda body: digest_answer(body["messages"][-1]["content"])
    online = batch(df, mode="online")
    assert online["response"].tolist() == expected(3) and sim.count == 1, "only the empty answer is asked again"


def openai_line(key: str, **changes) -> dict:
    """One successful line of an OpenAI batch output file, with some of its fields changed."""
    body = {"choices": [{"message": {"content": f"answer {key}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    for path, value in changes.items():
        where = body
        *parents, last = path.split(".")
        for name in parents:
            where = where[int(name)] if isinstance(where, list) else where[name]
        where[last] = value
    return {"custom_id": key, "response": {"status_code": 200, "body": body}}


def test_batch_result_lines_with_fields_of_the_wrong_type_fail_only_their_rows():
    """A result file is read as a provider wrote it: a mistyped line is its row's failure, never a crash."""
    lines = [openai_line("a"), openai_line("b", **{"choices.0.message.content": 7}),
             openai_line("c", **{"usage.completion_tokens": "2"}), openai_line("d", choices=["str"]), ["not", "a", "line"]]
    found = openai_batches.parse_results("\n".join(json.dumps(x) for x in lines))
    assert found["a"].text == "answer a" and found["a"].error is None and found["a"].batch
    assert found["b"].error.startswith("malformed response: choices[0].message.content is an int")
    assert (found["b"].input_tokens, found["b"].output_tokens) == (5, 2), "its usage was billed all the same"
    assert found["c"].error.startswith("malformed response: usage.completion_tokens")
    assert found["d"].error.startswith("malformed response: choices[0]") and set(found) == set("abcd")
    # Every line mistyped the same way: the columnar fast path must not hand numbers on as texts.
    same = [openai_line(k, **{"choices.0.message.content": 7}) for k in "xy"]
    assert all(r.error is not None for r in openai_batches.parse_results("\n".join(map(json.dumps, same))).values())
    message = {"content": [{"type": "text", "text": 7}], "usage": {"input_tokens": 3, "output_tokens": 1},
               "stop_reason": "end_turn"}
    anthropic = anthropic_results(json.dumps({"custom_id": "e", "result": {"type": "succeeded", "message": message}}))
    assert anthropic["e"].error.startswith("malformed response: content") and anthropic["e"].input_tokens == 3
    gemini = gemini_results("\n".join(json.dumps(x) for x in [
        {"key": "f", "response": {"candidates": [{"content": {"parts": [{"text": "fine"}]}, "finishReason": "STOP"}],
                                  "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1}}},
        {"key": "g", "response": {"candidates": [{"content": {"parts": [{"text": ["x"]}]}}]}},
        {"key": "h", "response": {"candidates": ["str"]}},
    ]))
    assert gemini["f"].text == "fine" and gemini["f"].error is None
    assert gemini["g"].error.startswith("malformed response") and gemini["h"].error.startswith("malformed response")


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(constants, "BATCH_CALL_RETRY_SECONDS", (0.01, 0.01, 0.01))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_api_calls_are_asked_again_after_a_brief_outage(batch, sim, provider, quick_retries):
    sim.batches.settings = BatchSettings(seconds=0.05, outage=3)  # creating (and uploading) answers 503 three times
    out = batch(frame(6), provider)
    assert out["response"].tolist() == expected(6) and out["response_error"].isna().all()
    assert len(sim.batches.created) == 1, "asked again, and created once: no second, billed batch"


def test_an_outage_longer_than_the_retries_fails_the_call_and_a_rerun_creates_the_batch(batch, sim, quick_retries):
    from llmframe.errors import ProviderError

    sim.batches.settings = BatchSettings(seconds=0.05, outage=100)
    with pytest.raises(ProviderError, match="503"):
        batch(frame(4))
    assert sim.batches.created == []
    sim.batches.settings = BatchSettings(seconds=0.05)
    assert batch(frame(4))["response"].tolist() == expected(4)
    assert len(sim.batches.created) == 1


def test_one_providers_failure_does_not_stop_listing_or_cancelling_the_other_jobs(batch, sim, quick_retries,
                                                                                  monkeypatch):
    from llmframe.errors import ProviderError
    from llmframe.testing import Simulator

    monkeypatch.setenv("OPENAI_API_KEY", sim.api_key)
    with Simulator() as gone:
        gone.batches.settings = BatchSettings(seconds=30.0)
        lost = batch(frame(3, "lost"), method="submit", base_url=gone.base_url, api_key=gone.api_key)
    sim.batches.settings = BatchSettings(seconds=30.0)
    kept = batch(frame(3, "kept"), method="submit")
    with pytest.warns(RuntimeWarning, match=f"1 batch job.*could not be refreshed.*{lost.id}"):
        listed = {j["id"]: j for j in llmframe.batches(refresh=True)}
    assert "refresh_error" in listed[lost.id] and "refresh_error" not in listed[kept.id]
    with pytest.warns(RuntimeWarning, match=f"could not be cancelled.*{lost.id}"):
        asked = llmframe.cancel_batches(all=True)
    assert asked == [kept.status()["chunks"][0]["batch_id"]]
    assert kept.result()["response_error"].str.contains("cancelled").all()
    with pytest.raises(ProviderError):  # named alone, its failure is the call's
        llmframe.cancel_batches(lost.id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_lost_key_file_still_collects_the_batch_by_its_ids(batch, sim, cache_dir, provider):
    from llmframe.batch.state import BatchStateWarning

    sim.batches.settings = BatchSettings(seconds=0.5)
    df = frame(8)
    job = batch(df, provider, method="submit")
    (key_file,) = (cache_dir / constants.BATCH_STATE_DIR / job.id).glob("*.keys")
    key_file.unlink()  # a user tidying up, a sync tool, a half-copied cache
    with pytest.warns(BatchStateWarning, match=f"{key_file.name} cannot be read"):
        out = batch(df, provider)  # the same call re-attaches to the running batch
    assert out["response"].tolist() == expected(8) and out["response_error"].isna().all()
    assert len(sim.batches.created) == 1, "collected by the answers' ids: nothing sent again"


def test_a_lost_key_file_of_one_batch_among_several_sends_nothing_twice(batch, sim, cache_dir, monkeypatch):
    from llmframe.batch.state import BatchStateWarning

    monkeypatch.setattr(provider_class("openai"), "batch_limits", (2, 10**9))  # 6 rows: three batches
    sim.batches.settings = BatchSettings(seconds=0.5)
    job = batch(frame(6), method="submit")
    key_files = sorted((cache_dir / constants.BATCH_STATE_DIR / job.id).glob("*.keys"))
    assert len(key_files) == 3
    key_files[1].unlink()  # its two rows are covered by nothing the disk knows of, yet are in a running batch
    with pytest.warns(BatchStateWarning):
        out = batch(frame(6))
    assert out["response"].tolist() == expected(6)
    assert [c.requests for c in sim.batches.created] == [2, 2, 2], "no row was sent again"
