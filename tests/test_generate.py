"""df.llm.generate end to end: the simulator over real HTTP, through the real openai SDK."""

from __future__ import annotations

import asyncio
import functools
import json
import re

import numpy as np
import pandas as pd
import pytest

import llmframe

from llmframe.errors import ConfigError, RunAborted, TemplateError
from llmframe.testing import Faults, SimulatedError, digest_answer

from .conftest import MODEL


def frame(n: int, index=None) -> pd.DataFrame:
    return pd.DataFrame({"title": [f"t{i}" for i in range(n)], "body": [f"body {i}" for i in range(n)]}, index=index)


def expected(df: pd.DataFrame) -> list[str]:
    return [digest_answer(f"Summarise {t}: {b}") for t, b in zip(df["title"], df["body"])]


@pytest.mark.parametrize(
    "index",
    [
        pd.Index([7, 3, 9, 0, 5, 1, 8, 2, 6, 4]),  # shuffled
        pd.Index([1, 1, 2, 2, 3, 3, 1, 2, 3, 1]),  # duplicated labels
        pd.Index([f"row-{c}" for c in "jihgfedcba"]),  # strings
        pd.MultiIndex.from_product([["a", "b"], [3, 1, 2, 5, 4]]),
    ],
    ids=["shuffled", "duplicated", "strings", "multiindex"],
)
def test_each_row_gets_its_own_answer_on_any_index(gen, index):
    df = frame(10, index=index)
    out = gen(df, "Summarise {title}: {body}", output="summary")
    assert out.index.equals(df.index)
    assert out["summary"].tolist() == expected(df)
    assert out["summary_error"].isna().all()


def test_output_is_a_new_frame_with_new_columns_last(gen):
    df = frame(5)
    before = df.copy()
    out = gen(df, "Summarise {title}: {body}", output="summary")
    pd.testing.assert_frame_equal(df, before)
    assert list(out.columns) == ["title", "body", "summary", "summary_error"]
    assert out["summary"].dtype == df["title"].dtype  # pandas' own text dtype, as the input's (str on pandas 3)
    assert out["summary_error"].dtype == df["title"].dtype


def test_report_is_plain_json(gen, sim):
    out = gen(frame(6), "Summarise {title}: {body}", output="summary")
    report = json.loads(json.dumps(out.attrs["llmframe"]))
    assert report["model"] == MODEL
    assert report["rows"] == 6 and report["requests_sent"] == 6 == sim.count
    assert report["cached"] == 0 and report["failed"] == 0 and report["deduplicated"] == 0
    assert report["input_tokens"] > 0 and report["output_tokens"] > 0 and report["seconds"] >= 0


def test_rerun_is_served_entirely_from_cache(gen, sim):
    df = frame(50)
    first = gen(df, "Summarise {title}: {body}")
    assert sim.count == 50
    second = gen(df, "Summarise {title}: {body}")
    assert sim.count == 50, "a cached re-run must not reach the server"
    pd.testing.assert_frame_equal(first, second)
    report = second.attrs["llmframe"]
    assert report["cached"] == 50 and report["requests_sent"] == 0


def test_identical_prompts_are_sent_once(gen, sim):
    df = pd.DataFrame({"q": [f"question {i % 100}" for i in range(1000)]})
    out = gen(df, "{q}", max_concurrency=32)
    assert sim.count == 100
    assert out["response"].tolist() == [digest_answer(q) for q in df["q"]]
    report = out.attrs["llmframe"]
    assert report["requests_sent"] == 100 and report["deduplicated"] == 900


def test_cache_refresh_resends_and_rewrites(gen, sim):
    df = frame(10)
    gen(df, "Summarise {title}: {body}")
    sim.answer = lambda body: "fresh"
    out = gen(df, "Summarise {title}: {body}", cache="refresh")
    assert sim.count == 20 and (out["response"] == "fresh").all()
    again = gen(df, "Summarise {title}: {body}")
    assert sim.count == 20 and (again["response"] == "fresh").all(), "refresh must write the new answers"


def test_cache_false_neither_reads_nor_writes(gen, sim, cache_dir):
    df = frame(5)
    gen(df, "Summarise {title}: {body}", cache=False)
    gen(df, "Summarise {title}: {body}", cache=False)
    assert sim.count == 10
    gen(df, "Summarise {title}: {body}")
    assert sim.count == 15


def test_cache_key_changes_with_parameters_and_model(gen, sim):
    df = frame(3)
    gen(df, "Summarise {title}: {body}", temperature=0)
    gen(df, "Summarise {title}: {body}", temperature=0)
    gen(df, "Summarise {title}: {body}", temperature=0.0)  # the same number, the same key
    assert sim.count == 3
    gen(df, "Summarise {title}: {body}", temperature=0.5)
    gen(df, "Summarise {title}: {body}", temperature=0, model="openai:other-model")
    gen(df, "Summarise {title}: {body}", temperature=0, system="Be brief.")
    assert sim.count == 12
    gen(df, "Summarise {title}: {body}", temperature=0, max_concurrency=2, api_key="another-key")
    assert sim.count == 12, "concurrency and keys do not change the answer, so they are not in the key"


def test_failed_rows_land_in_the_error_column_without_shifting_others(gen, sim):
    def answer(body):
        prompt = body["messages"][-1]["content"]
        if "BAD" in prompt:
            raise SimulatedError(400, "this prompt is not allowed")
        return digest_answer(prompt)

    sim.answer = answer
    df = pd.DataFrame({"x": ["ok 0", "BAD 1", "ok 2", "BAD 3", "ok 4"]}, index=list("abcde"))
    out = gen(df, "{x}", output="y")
    assert out["y"].isna().tolist() == [False, True, False, True, False]
    assert out.loc[["a", "c", "e"], "y"].tolist() == [digest_answer(x) for x in ["ok 0", "ok 2", "ok 4"]]
    assert out.loc["b", "y_error"].startswith("HTTP 400") and "not allowed" in out.loc["b", "y_error"]
    assert out.loc[["a", "c", "e"], "y_error"].isna().all()
    report = out.attrs["llmframe"]
    assert report["failed"] == 2 and report["errors"] and "not allowed" in report["errors"][0]
    # Failures are never cached: a re-run asks again for exactly the failed rows.
    gen(df, "{x}", output="y")
    assert sim.count == 5 + 2


def test_errors_raise_keeps_finished_answers(gen, sim):
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(400, "nope")) if "3" in str(body) else "fine"
    df = pd.DataFrame({"x": [f"v{i}" for i in range(6)]})
    with pytest.raises(RunAborted, match="1 of 6 rows failed") as info:
        gen(df, "{x}", errors="raise")
    assert info.value.report["failed"] == 1
    sim.answer = lambda body: "fine"
    out = gen(df, "{x}", errors="raise")
    assert sim.count == 6 + 1, "only the failed row is sent again"
    assert (out["response"] == "fine").all() and "response_error" not in out


def test_missing_values_are_skipped_with_a_reason(gen, sim):
    df = pd.DataFrame({"x": ["a", None, np.nan, "d", pd.NA]}, dtype=object)
    out = gen(df, "say {x}")
    assert sim.count == 2
    assert out["response"].isna().tolist() == [False, True, True, False, True]
    assert out["response_error"].iloc[1] == "skipped: missing value in column 'x'"
    assert out.attrs["llmframe"]["skipped"] == 3 and out.attrs["llmframe"]["failed"] == 0


def test_generation_parameters_reach_the_server(gen, sim):
    gen(
        frame(1),
        "Summarise {title}: {body}",
        system="Be brief.",
        temperature=0,
        top_p=0.5,
        max_tokens=64,
        seed=7,
        stop=["\n\n"],
        params={"presence_penalty": 0.1, "user": "u1"},
    )
    body = sim.requests[0].body
    assert body["model"] == "sim-model"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Summarise t0: body 0"},
    ]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0, 0.5, 64, 7)
    assert body["stop"] == ["\n\n"] and body["presence_penalty"] == 0.1 and body["user"] == "u1"


def test_answers_without_a_finish_reason_are_counted_under_unknown(gen, sim):
    sim.faults = Faults(null_finish_rate=1.0)  # "finish_reason": null, as some compatible servers send
    out = gen(frame(3), "Summarise {title}: {body}", usage=True, prices={MODEL: {"input_mtok": 1, "output_mtok": 1}})
    assert out.attrs["llmframe"]["finish_reasons"] == {"unknown": 3}
    assert out["response_error"].isna().all() and out["response_finish_reason"].isna().all()
    again = gen(frame(3), "Summarise {title}: {body}")
    assert again.attrs["llmframe"]["cached"] == 3 and again.attrs["llmframe"]["finish_reasons"] == {"unknown": 3}
    assert json.loads(json.dumps(again.attrs["llmframe"]))["finish_reasons"] == {"unknown": 3}


def test_numpy_numbers_are_accepted_as_parameters(gen, sim):
    counts = np.array([64, 3])  # values that come out of a frame or an array are numpy scalars
    gen(frame(1), "Summarise {title}: {body}", max_tokens=counts[0], seed=counts[1], timeout=np.float64(30),
        max_attempts=np.int64(2), max_concurrency=np.int32(4))
    body = sim.requests[0].body
    assert (body["max_tokens"], body["seed"]) == (64, 3)
    again = gen(frame(1), "Summarise {title}: {body}", max_tokens=64, seed=3)
    assert again.attrs["llmframe"]["cached"] == 1, "numpy and Python numbers ask the same question"


def test_integer_column_names_work_in_string_templates(gen, sim):
    df = pd.DataFrame([["t0", "body 0"], ["t1", "body 1"]])  # columns 0 and 1, as read_csv(header=None) gives
    out = gen(df, "Summarise {0}: {1}")
    assert out["response"].tolist() == [digest_answer("Summarise t0: body 0"), digest_answer("Summarise t1: body 1")]


def test_message_list_and_function_templates(gen, sim):
    df = frame(3)
    messages = [{"role": "system", "content": "You summarise {title}."}, {"role": "user", "content": "{body}"}]
    out = gen(df, messages)
    assert out["response"].tolist() == [digest_answer(b) for b in df["body"]]
    assert sim.requests[0].body["messages"][0]["content"] == "You summarise t0."
    out = gen(df, lambda row: None if row["title"] == "t1" else f"fn {row['body']}")
    assert out["response"].tolist()[0] == digest_answer("fn body 0")
    assert pd.isna(out["response"].iloc[1]) and "returned None" in out["response_error"].iloc[1]


def test_empty_frame_sends_nothing(gen, sim):
    out = gen(frame(0), "Summarise {title}: {body}", output="summary")
    assert sim.count == 0 and len(out) == 0
    assert list(out.columns) == ["title", "body", "summary", "summary_error"]


def test_series_accessor_returns_an_aligned_series(gen, sim):
    s = pd.Series(["un", "deux", "trois"], index=[10, 30, 20], name="word")
    out = gen(s, "Translate to English: {}")
    assert isinstance(out, pd.Series) and out.index.equals(s.index) and out.name == "response"
    assert out.tolist() == [digest_answer(f"Translate to English: {w}") for w in s]
    named = gen(s, "Say {word}", output="said")
    assert named.name == "said" and named.iloc[0] == digest_answer("Say un")
    unnamed = gen(pd.Series([1, 2]), "n={0}")
    assert unnamed.tolist() == [digest_answer("n=1"), digest_answer("n=2")]
    assert unnamed.attrs["llmframe"]["rows"] == 2


def test_series_failures_are_missing_and_reported(gen, sim):
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(422, "bad")) if "x" in str(body) else "ok"
    out = gen(pd.Series(["a", "x", "b"]), "{}")
    assert out.isna().tolist() == [False, True, False]
    assert out.attrs["llmframe"]["failed"] == 1 and "bad" in out.attrs["llmframe"]["errors"][0]


def test_agenerate_matches_generate(gen, sim):
    df = frame(8, index=list("hgfedcba"))

    async def main():
        return await df.llm.agenerate(
            "Summarise {title}: {body}", model=MODEL, base_url=sim.base_url, api_key=sim.api_key, progress=False
        )

    out = asyncio.run(main())
    assert out["response"].tolist() == expected(df)
    assert sim.count == 8
    pd.testing.assert_frame_equal(gen(df, "Summarise {title}: {body}"), out)
    assert sim.count == 8

    async def series():
        return await df["body"].llm.agenerate("{}", model=MODEL, base_url=sim.base_url, api_key=sim.api_key)

    assert asyncio.run(series()).tolist() == [digest_answer(b) for b in df["body"]]


def test_sync_generate_inside_a_running_event_loop(gen, sim):
    """What Jupyter does: the cell's code runs while the kernel's event loop is running."""
    df = frame(4)

    async def cell():
        return gen(df, "Summarise {title}: {body}")

    out = asyncio.run(cell())
    assert out["response"].tolist() == expected(df)


BAD_CALLS = [
    ({"template": "Summarise {nope}"}, TemplateError, "column 'nope'"),
    ({"template": "no placeholder here"}, TemplateError, "allow_no_placeholder"),
    ({"template": "{}"}, TemplateError, "positional"),
    ({"template": "{title"}, TemplateError, "bad template"),
    ({"template": 42}, TemplateError, "template must be"),
    ({"template": [{"role": "robot", "content": "{title}"}]}, TemplateError, "role"),
    ({"template": lambda row: row["nope"]}, TemplateError, "KeyError"),
    ({"model": "nonsense:model"}, ConfigError, "unknown provider 'nonsense'"),
    ({"model": "gpt-4o-mini"}, ConfigError, "provider:model"),
    ({"api_key": None}, ConfigError, "OPENAI_API_KEY"),
    ({"api_key": "  "}, ConfigError, "OPENAI_API_KEY"),
    ({"temperature": -1}, ConfigError, "temperature"),
    ({"temperature": "hot"}, ConfigError, "temperature"),
    ({"max_tokens": 0}, ConfigError, "max_tokens"),
    ({"top_p": 1.5}, ConfigError, "top_p"),
    ({"stop": 3}, ConfigError, "stop"),
    ({"max_concurrency": 0}, ConfigError, "max_concurrency"),
    ({"cache": "sometimes"}, ConfigError, "cache"),
    ({"errors": "ignore"}, ConfigError, "errors"),
    ({"missing": "drop"}, TemplateError, "missing"),
    ({"output": "title"}, ConfigError, "already has column(s) ['title']"),
    ({"params": {"temperature": 1}}, ConfigError, "params repeats"),
    ({"params": {"x": object()}}, ConfigError, "JSON"),
    ({"temprature": 0}, ConfigError, "unknown option"),
]


@pytest.mark.parametrize("change, error, message", BAD_CALLS, ids=[str(c[0]) for c in BAD_CALLS])
def test_bad_input_fails_before_any_request(gen, sim, change, error, message):
    df = frame(3)
    df.loc[1, "body"] = None
    kwargs = {"template": "Summarise {title}: {body}", **change}
    template = kwargs.pop("template")
    with pytest.raises(error, match=re.escape(message)):
        gen(df, template, **kwargs)
    assert sim.count == 0


def test_missing_raise_and_bytes_fail_before_any_request(gen, sim):
    df = pd.DataFrame({"x": ["a", None]})
    with pytest.raises(TemplateError, match="missing values, first at index 1"):
        gen(df, "{x}", missing="raise")
    with pytest.raises(TemplateError, match="bytes"):
        gen(pd.DataFrame({"x": [b"raw"]}), "{x}")
    assert sim.count == 0


def test_api_key_from_environment(gen, sim, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", sim.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    out = frame(2).llm.generate("Summarise {title}: {body}", model=MODEL, progress=False)
    assert out["response"].tolist() == expected(frame(2))


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_api_key_never_reaches_cache_report_errors_logs_or_reprs(gen, sim, cache_dir, caplog, capsys, transport):
    import logging

    from llmframe.engine import ratelimit
    from llmframe.engine.run import open_provider
    from llmframe.faces.frames import rows_of
    from llmframe.faces.planning import plan

    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and the HTTP library's included
    secret = "sk-test-SECRET-0123456789abcdef"
    gen = functools.partial(gen, provider_options={"transport": transport})
    run = plan(rows_of(frame(2)), "Summarise {title}: {body}", model=MODEL, base_url=sim.base_url, api_key=secret)
    assert secret not in repr(run) and "SECRET" not in repr(run.provider)
    assert "SECRET" not in repr(open_provider(run))
    # A shared cache's password neither (tests/test_cache_postgres.py follows it through a real run).
    shared = plan(rows_of(frame(2)), "{title}", model=MODEL, cache=f"postgresql://team:{secret}@db/answers")
    assert "SECRET" not in repr(shared) and "SECRET" not in f"{shared.cache}" and "team:***@db" in repr(shared)
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(403, f"Key {secret} may not use this model"))
    out = gen(frame(3), "Summarise {title}: {body}", api_key=secret)
    assert out["response_error"].notna().all()
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(401, f"Incorrect API key provided: {secret}"))
    with pytest.raises(RunAborted, match="refused the API key") as aborted:
        gen(frame(5), "Summarise {title}: {body}", api_key=secret)
    sim.answer = lambda body: "ok"
    ok = gen(frame(4), "Summarise {title}: {body}", api_key=secret, progress=True)
    written = b"".join(p.read_bytes() for p in cache_dir.rglob("*") if p.is_file())
    assert secret.encode() not in written and b"SECRET" not in written
    printed = capsys.readouterr()
    text = "".join([
        out.to_json(), json.dumps(out.attrs), json.dumps(ok.attrs), str(aborted.value), repr(aborted.value),
        caplog.text, printed.out, printed.err, repr(ratelimit._limiters), repr(llmframe.settings()),
    ])
    if transport == "sdk":
        assert "HTTP Request" in caplog.text, "the SDK's debug logs were really captured"
    assert secret not in text and "SECRET" not in text


def test_a_cache_that_cannot_be_written_warns_but_answers(gen, sim, monkeypatch):
    from llmframe.stores.diskcache import Store

    def disk_full(self, items, overwrite=False):  # fault injection: a full disk cannot be arranged here
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Store, "set_many", disk_full)
    with pytest.warns(RuntimeWarning, match="could not be written to the cache.*No space left"):
        out = gen(frame(3), "Summarise {title}: {body}")
    assert out["response"].tolist() == expected(frame(3))


def test_reports_of_batches_merge_into_the_report_of_the_whole(gen, sim):
    from llmframe.collect.columns import merge_reports

    df = pd.DataFrame({"x": ["a", "b", None, "c", "d"]})
    whole = gen(df, "{x}", cache=False).attrs["llmframe"]
    parts = [gen(df.iloc[:2], "{x}", cache=False).attrs["llmframe"], gen(df.iloc[2:], "{x}").attrs["llmframe"]]
    merged = merge_reports(parts)
    for name in ("rows", "failed", "skipped", "input_tokens", "output_tokens", "cached"):
        assert merged[name] == whole[name], name
    assert merged["requests_sent"] == whole["requests_sent"] == 4
    assert merged["runs"] == 2 and merged["finish_reasons"] == whole["finish_reasons"]
