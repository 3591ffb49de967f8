"""The Polars face: DataFrame, Series, expression and LazyFrame namespaces against the simulator, over real HTTP."""

from __future__ import annotations

import datetime as dt
import inspect
import subprocess
import sys
import textwrap
from typing import Literal

import pandas as pd
import polars as pl
import pytest
from pydantic import BaseModel

import llmframe
from llmframe.errors import ConfigError, RunAborted, TemplateError
from llmframe.faces.polars import DataFrameNamespace, ExprNamespace, LazyFrameNamespace, SeriesNamespace
from llmframe.options import OPTIONS
from llmframe.testing import SimulatedError, digest_answer

from .conftest import MODEL


class Address(BaseModel):
    city: str
    zip: int
    kind: Literal["home", "work"]


class Review(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    stars: int
    score: float
    recommended: bool
    when: dt.datetime
    tags: list[str]
    address: Address
    level: Literal[1, 2, 3]


@pytest.fixture
def kw(sim):
    return dict(model=MODEL, base_url=sim.base_url, api_key=sim.api_key, progress=False)


def reviews() -> dict:
    return {"review": ["great", "awful", None, "great"], "n": [1, 2, 3, 4]}


def test_a_dataframe_gets_string_answers_and_a_string_error_column_and_null_follows_missing(kw, sim):
    out = pl.DataFrame(reviews()).llm.generate("Sentiment of {review}", output="sentiment", **kw)
    assert out.columns == ["review", "n", "sentiment", "sentiment_error"]
    assert out.schema["sentiment"] == pl.String and out.schema["sentiment_error"] == pl.String
    assert out["sentiment"].to_list() == [digest_answer("Sentiment of great"), digest_answer("Sentiment of awful"),
                                          None, digest_answer("Sentiment of great")]
    assert out["sentiment_error"].to_list()[2] == "skipped: missing value in column 'review'"
    assert sim.count == 2, "duplicates are sent once, nulls never"
    with pytest.raises(TemplateError, match="1 row\\(s\\) have missing values, first at index 2"):
        pl.DataFrame(reviews()).llm.generate("Sentiment of {review}", missing="raise", **kw)
    assert sim.count == 2


def test_the_report_is_on_the_result_and_in_last_report(kw):
    out = pl.DataFrame(reviews()).llm.generate("{review}", **kw)
    assert out.llm.report["rows"] == 4 and out.llm.report["skipped"] == 1
    assert llmframe.last_report() is out.llm.report
    assert pl.DataFrame(reviews()).llm.report is None, "a frame llmframe did not make has no report"
    again = pd.DataFrame(reviews()).llm.generate("{review}", **kw)
    assert llmframe.last_report() is again.attrs["llmframe"] is again.llm.report, "pandas' attrs stay, one place"


def test_a_pandas_run_then_the_same_polars_call_sends_nothing(kw, sim):
    data = {"title": ["a", "b", "a", "c"], "n": [1, 2, 1, 3], "price": [1.5, 2.0, 1.5, 0.25],
            "ok": [True, False, True, True], "tags": [["x", "y"], [], ["x", "y"], ["z"]],
            "when": [dt.datetime(2024, 1, 2, 3, 4, 5)] * 4}
    template = "Title {title} #{n} at {price} ok={ok} tags={tags} on {when}"
    pandas_out = pd.DataFrame(data).llm.generate(template, **kw)
    sent = sim.count
    assert sent == 3
    polars_out = pl.DataFrame(data).llm.generate(template, **kw)
    assert sim.count == sent, "the same rows and arguments give the same keys from pandas and from Polars"
    assert polars_out.llm.report["cached"] == 4
    assert polars_out["response"].to_list() == pandas_out["response"].tolist()
    structured = pd.DataFrame(data).llm.generate(template, output=Review, prefix="r_", **kw)
    sent = sim.count
    again = pl.DataFrame(data).llm.generate(template, output=Review, prefix="r_", **kw)
    assert sim.count == sent and again["r_stars"].to_list() == structured["r_stars"].tolist()


def test_structured_fields_become_native_polars_columns(kw):
    out = pl.DataFrame({"text": ["one", "two", "three"]}).llm.generate("Review {text}", output=Review, **kw)
    schema = out.schema
    assert schema["sentiment"] == pl.Enum(["positive", "negative", "neutral"])
    assert schema["stars"] == pl.Int64 and schema["score"] == pl.Float64 and schema["recommended"] == pl.Boolean
    assert isinstance(schema["when"], pl.Datetime)
    assert schema["tags"] == pl.List(pl.String)
    assert schema["address"] == pl.Struct({"city": pl.String, "zip": pl.Int64, "kind": pl.Enum(["home", "work"])})
    assert schema["level"] == pl.Int64, "pl.Enum holds strings: numeric categories stay numbers"
    assert schema["review_error"] == pl.String
    assert not any(dtype == pl.Object for dtype in schema.values())
    assert out["address"].struct.field("zip").dtype == pl.Int64 and out["review_error"].null_count() == 3


def test_object_mode_and_usage_columns(kw):
    frame = pl.DataFrame({"text": ["one", "two"]})
    objects = frame.llm.generate("Review {text}", output=Review, output_mode="object", **kw)
    assert objects.schema["review"] == pl.Object and isinstance(objects["review"][0], Review)
    used = frame.llm.generate("{text}", usage=True, prices={MODEL: {"input_mtok": 1.0, "output_mtok": 2.0}}, **kw)
    assert used.schema["response_input_tokens"] == pl.Int64 and used.schema["response_cost"] == pl.Float64
    assert used.schema["response_cached"] == pl.Boolean and used["response_input_tokens"].min() > 0


def test_a_series_answers_each_value_and_a_struct_series_its_fields(kw):
    answers = pl.Series("review", ["great", "great", None]).llm.generate("Say {}", **kw)
    assert isinstance(answers, pl.Series) and answers.name == "response" and answers.dtype == pl.String
    assert answers.to_list() == [digest_answer("Say great")] * 2 + [None]
    assert llmframe.last_report()["skipped"] == 1
    unnamed = pl.Series(["great"]).llm.generate("Say {value}", **kw)
    assert unnamed.to_list() == [digest_answer("Say great")]
    fields = pl.DataFrame(reviews()).to_struct("r").llm.generate("{review} {n}", output=Review, **kw)
    assert isinstance(fields, pl.DataFrame) and "stars" in fields.columns and "review_error" not in fields.columns


def test_expressions_run_through_the_same_cache(kw, sim):
    frame = pl.DataFrame(reviews())
    out = frame.with_columns(pl.col("review").llm.generate("Sentiment of {}", **kw).alias("sentiment"))
    assert out.columns == ["review", "n", "sentiment"] and out.schema["sentiment"] == pl.String
    assert out["sentiment"].to_list()[0] == digest_answer("Sentiment of great")
    sent = sim.count
    again = frame.select(pl.col("review").llm.generate("Sentiment of {review}", **kw))
    assert sim.count == sent and again["review"].to_list() == out["sentiment"].to_list()
    both = frame.with_columns(pl.struct("review", "n").llm.generate("{review}: {n}", output=Review, **kw).alias("r"))
    assert isinstance(both.schema["r"], pl.Struct) and both["r"].struct.field("sentiment").dtype == pl.Enum(
        ["positive", "negative", "neutral"])
    assert both.unnest("r")["stars"].null_count() == 1, "the null review is skipped"


def test_an_expression_checks_its_options_when_made(kw, sim):
    with pytest.raises(ConfigError, match="errors must be one of"):
        pl.col("review").llm.generate("{}", errors="sometimes", **kw)
    with pytest.raises(ConfigError, match="unknown option"):
        pl.col("review").llm.generate("{}", temprature=0, **kw)
    assert sim.count == 0


def test_a_lazyframe_runs_the_model_when_collected(kw, sim):
    lazy = pl.LazyFrame(reviews()).llm.generate("Sentiment of {review}", output=Review, **kw)
    assert isinstance(lazy, pl.LazyFrame) and sim.count == 0, "nothing is sent before collect"
    schema = lazy.collect_schema()
    assert schema["sentiment"] == pl.Enum(["positive", "negative", "neutral"]) and schema["tags"] == pl.List(pl.String)
    out = lazy.collect()
    assert out.schema == schema and sim.count == 2
    assert llmframe.last_report()["rows"] == 4
    with pytest.raises(TemplateError, match="column 'title', which the frame does not have"):
        pl.LazyFrame(reviews()).llm.generate("{title}", **kw)  # checked against the schema, before collect
    with pytest.raises(ConfigError, match="already has column"):
        pl.LazyFrame(reviews()).llm.generate("{review}", output="n", **kw)


def test_bad_input_is_refused_before_anything_is_sent_in_polars_words(kw, sim):
    frame = pl.DataFrame({"blob": [b"\x00\x01"], "text": ["a"]})
    with pytest.raises(TemplateError, match=r"pl\.Binary.*pl\.col\('blob'\)\.cast\(pl\.String\)"):
        frame.llm.generate("{blob}", **kw)
    with pytest.raises(TemplateError, match=r"does not have; columns are \['blob', 'text'\]"):
        frame.llm.generate("{nope}", **kw)
    with pytest.raises(ConfigError, match=r"already has column\(s\) \['text'\]"):
        frame.llm.generate("{text}", output="text", **kw)
    with pytest.raises(TemplateError, match=r"pl\.Binary"):
        frame.lazy().llm.generate("{blob}", **kw)
    assert sim.count == 0


def test_retry_failed_resends_only_the_failed_rows(kw, sim):
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(400, "no")) if (
        body["messages"][-1]["content"] == "row 3") else "ok"
    out = pl.DataFrame({"x": [f"row {i}" for i in range(5)]}).llm.generate("{x}", output="y", **kw)
    assert out["y"].null_count() == 1 and sim.count == 5
    sim.answer = lambda body: "fixed"
    again = out.llm.retry_failed()
    assert sim.count == 6 and again["y"].to_list() == ["ok"] * 3 + ["fixed", "ok"]
    assert again.columns == ["x", "y", "y_error"] and again["y_error"].null_count() == 5
    with pytest.raises(ConfigError, match="not made by df.llm.generate"):
        pl.DataFrame({"x": ["a"]}).llm.retry_failed()
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(400, "no"))
    with pytest.raises(RunAborted) as raised:
        pl.DataFrame({"x": ["z"]}).llm.generate("{x}", errors="raise", **kw)
    assert isinstance(raised.value.result, pl.DataFrame)


def test_agenerate_estimate_submit_and_sweep(kw, sim):
    import asyncio

    frame = pl.DataFrame({"x": ["a", "b"]})
    out = asyncio.run(frame.llm.agenerate("{x}", **kw))
    assert out["response"].to_list() == [digest_answer("a"), digest_answer("b")]
    estimate = pl.DataFrame({"x": ["a", "b", "c"]}).llm.estimate("{x}", model=MODEL, base_url=sim.base_url)
    assert estimate.rows == 3 and estimate.uncached_requests == 1
    job = pl.DataFrame({"x": ["p", "q"]}).llm.submit("{x}", poll_interval=0.02, **kw)
    result = job.result()
    assert isinstance(result, pl.DataFrame) and result["response"].to_list() == [digest_answer("p"), digest_answer("q")]
    background = pl.DataFrame({"x": ["r"]}).llm.submit("{x}", mode="online", **kw)
    assert background.result()["response"].to_list() == [digest_answer("r")]
    swept = frame.llm.sweep("{x}", models=[MODEL], params={"temperature": [0, 1]}, base_url=sim.base_url,
                            api_key=sim.api_key, progress=False)
    assert len(swept.table) == 4 and len(swept.summary()) == 2


def test_signatures_are_the_options_table():
    names = [o.name for o in OPTIONS]
    for method in (DataFrameNamespace.generate, DataFrameNamespace.submit, SeriesNamespace.agenerate,
                   ExprNamespace.generate, LazyFrameNamespace.generate):
        keywords = [p.name for p in inspect.signature(method).parameters.values() if p.kind is p.KEYWORD_ONLY]
        assert keywords == names
    assert pl.DataFrame.llm is DataFrameNamespace and pl.Expr.llm is ExprNamespace


def test_dtype_backend_is_refused_by_design_naming_the_fix_before_anything_is_sent(kw, sim):
    # pandas' option: Polars' columns are Arrow-backed Polars dtypes already, so a value is refused, not ignored.
    frame = pl.DataFrame({"x": ["a", "b"]})
    calls = [lambda: frame.llm.generate("{x}", dtype_backend="pyarrow", **kw),
             lambda: frame.llm.submit("{x}", mode="online", dtype_backend="numpy_nullable", **kw),
             lambda: frame["x"].llm.generate("{}", dtype_backend="pyarrow", **kw),
             lambda: pl.col("x").llm.generate("{}", dtype_backend="pyarrow", **kw),
             lambda: frame.lazy().llm.generate("{x}", dtype_backend="pyarrow", **kw)]
    for call in calls:
        with pytest.raises(ConfigError, match=r"dtype_backend='\w+': dtype_backend= is for pandas results; a Polars "
                                              r"frame's columns are Arrow-backed"):
            call()
    with pytest.raises(ConfigError, match="dtype_backend must be None, 'numpy_nullable' or 'pyarrow', got 'x'"):
        frame.llm.generate("{x}", dtype_backend="x", **kw)
    assert sim.count == 0
    out = frame.llm.generate("{x}", dtype_backend=None, **kw)  # the default, as pandas' None: Polars' own dtypes
    assert out.schema["response"] == pl.String and sim.count == 2


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_llmframe_imports_neither_frame_library_and_either_order_registers():
    assert run_python("import sys, llmframe; print('pandas' in sys.modules, 'polars' in sys.modules)") == "False False"
    assert run_python("import llmframe, polars as pl; print(hasattr(pl.DataFrame, 'llm'))") == "True"
    assert run_python("import polars as pl, llmframe; print(hasattr(pl.Expr, 'llm'))") == "True"
    assert run_python("import llmframe, pandas as pd; print(hasattr(pd.DataFrame, 'llm'))") == "True"


@pytest.mark.slow
def test_a_polars_run_works_where_pandas_cannot_be_imported(cache_dir):
    """pandas made unimportable by a finder on sys.meta_path: the Polars path needs none of it. (Where pandas is
    installed, pyarrow imports it on its first array, for its own isinstance checks.)"""
    out = run_python("""
        import importlib.abc, importlib.machinery, sys

        class NoPandas(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path, target=None):
                if name.partition(".")[0] == "pandas":
                    return importlib.machinery.ModuleSpec(name, self)

            def create_module(self, spec):
                raise ImportError(f"{spec.name} is blocked by this test")

        sys.meta_path.insert(0, NoPandas())
        import llmframe, polars as pl
        from llmframe.testing import Simulator, digest_answer
        with Simulator() as sim:
            kw = dict(model="openai:m", base_url=sim.base_url, api_key=sim.api_key, progress=False)
            df = pl.DataFrame({"x": ["a", "b", None]})
            out = df.llm.generate("{x}", **kw)
            assert out["response"].to_list() == [digest_answer("a"), digest_answer("b"), None]
            lazy = df.lazy().llm.generate("{x}", output="y", **kw).collect()
            expr = df.select(pl.col("x").llm.generate("{}", **kw))
            assert lazy["y"].to_list() == expr["x"].to_list() == out["response"].to_list()
            assert sim.count == 2
        print("pandas" in sys.modules)
    """)
    assert out == "False"


def test_arrow_texts_become_polars_strings_chunk_by_chunk_and_an_all_null_column_stays_null():
    import pyarrow as pa

    from llmframe.faces.polars_frames import series

    texts = pa.chunked_array([pa.array(["short", None], pa.large_string()),
                              pa.array(["a text longer than twelve bytes, kept by reference"], pa.large_string())])
    made = series("answer", texts)
    assert made.dtype == pl.String and made.to_list() == texts.to_pylist()
    errors = series("error", pa.nulls(3, pa.large_string()))
    assert errors.name == "error" and errors.dtype == pl.String and errors.null_count() == 3
