"""dtype_backend=: the pandas face builds its new columns in pandas' defaults, nullable numpy or ArrowDtype.

The core returns the same Arrow columns and the same cache keys whatever the backend; pd.testing checks each
backend's columns against ones built here from the default run's values with pandas' own dtypes.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import BaseModel

import llmframe
from llmframe.errors import ConfigError
from llmframe.testing.simulator import SimulatedError, default_answer

BACKENDS = [None, "numpy_nullable", "pyarrow"]
USAGE = {"response_input_tokens": pa.int64(), "response_output_tokens": pa.int64(),
         "response_cache_write_tokens": pa.int64(), "response_reasoning_tokens": pa.int64(),
         "response_cost": pa.float64(),
         "response_cached": pa.bool_(), "response_latency_s": pa.float64(), "response_finish_reason": pa.large_string()}


class Review(BaseModel):
    stars: int
    score: float
    spam: bool
    mood: Literal["good", "bad"]
    tags: list[str]
    summary: str


def _refusing(body: dict) -> str:
    """The simulator's answer, but an HTTP 400 for the prompt that says "refuse": a failed row."""
    if "refuse" in body["messages"][-1]["content"]:
        raise SimulatedError(400, "refused by the test")
    return default_answer(body)


def _missing(value) -> bool:
    return value is None or (not isinstance(value, (list, dict)) and pd.isna(value))


def _arrow(series: pd.Series, kind: pa.DataType) -> pd.Series:
    """The series' values as pd.ArrowDtype(kind), missing values as Arrow nulls: what read_parquet gives."""
    values = pa.array([None if _missing(v) else v for v in series.tolist()], type=kind)
    return pd.Series(pd.arrays.ArrowExtensionArray(values), index=series.index, name=series.name)


def _nullable_text(series: pd.Series) -> pd.Series:
    """The series' texts as pandas' nullable `string` (<NA>), as read_csv(dtype_backend="numpy_nullable") gives."""
    return pd.Series([None if _missing(v) else v for v in series.tolist()], index=series.index,
                     name=series.name, dtype=pd.StringDtype())


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"q": ["first", "please refuse", None, "last"]}, index=[10, 3, 7, 1])


def test_text_error_and_usage_columns_in_each_backend(gen, sim, frame):
    sim.answer = _refusing
    base = gen(frame, "{q}", usage=True, cache=False)
    text = ["response", "response_error", "response_finish_reason"]
    assert base["response"].isna().tolist() == [False, True, True, False]
    assert "refused by the test" in base.loc[3, "response_error"]
    assert all(base[c].dtype == frame["q"].dtype for c in text)  # pandas' default, as the input's
    nullable = gen(frame, "{q}", usage=True, cache=False, dtype_backend="numpy_nullable")
    arrow = gen(frame, "{q}", usage=True, cache=False, dtype_backend="pyarrow")
    for column in text:
        pd.testing.assert_series_equal(nullable[column], _nullable_text(base[column]))
        pd.testing.assert_series_equal(arrow[column], _arrow(base[column], pa.large_string()))
    for column, kind in USAGE.items():
        assert arrow[column].dtype == pd.ArrowDtype(kind), column
        if column == "response_latency_s":  # measured per run
            continue
        pd.testing.assert_series_equal(arrow[column], _arrow(base[column], kind))
        if kind != pa.large_string():
            pd.testing.assert_series_equal(nullable[column], base[column])
    pd.testing.assert_series_equal(arrow["q"], frame["q"])  # the input's own columns stay as they are
    assert arrow.loc[3, "response"] is pd.NA and nullable.loc[3, "response"] is pd.NA


def test_structured_fields_in_each_backend(gen, sim, frame):
    sim.answer = _refusing
    base = gen(frame, "{q}", output=Review)
    fields = ["stars", "score", "spam", "mood", "tags", "summary", "review_error"]
    assert [str(base[f].dtype) for f in fields[:4]] == ["Int64", "Float64", "boolean", "category"]
    assert base["tags"].dtype == object and base["summary"].dtype == frame["q"].dtype

    nullable = gen(frame, "{q}", output=Review, dtype_backend="numpy_nullable")
    for column in ("stars", "score", "spam", "mood", "tags"):
        pd.testing.assert_series_equal(nullable[column], base[column])
    for column in ("summary", "review_error"):
        pd.testing.assert_series_equal(nullable[column], _nullable_text(base[column]))

    arrow = gen(frame, "{q}", output=Review, dtype_backend="pyarrow")
    kinds = {"stars": pa.int64(), "score": pa.float64(), "spam": pa.bool_(), "tags": pa.large_list(pa.large_string()),
             "summary": pa.large_string(), "review_error": pa.large_string()}
    for column, kind in kinds.items():
        pd.testing.assert_series_equal(arrow[column], _arrow(base[column], kind))
    # Categories stay dictionary-encoded, every allowed value a category, as read_parquet gives them.
    codes = base["mood"].cat.codes.to_numpy()
    mood = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32(), mask=codes < 0),
                                          pa.array(list(base["mood"].cat.categories), type=pa.string()))
    pd.testing.assert_series_equal(arrow["mood"], pd.Series(pd.arrays.ArrowExtensionArray(mood), index=frame.index,
                                                            name="mood"))
    assert arrow["stars"].isna().tolist() == [False, True, True, False]


def test_the_backend_changes_neither_the_cache_key_nor_what_is_sent(gen, sim, frame):
    base = gen(frame, "{q}", output=Review)
    sent = sim.count
    for backend in BACKENDS:
        again = gen(frame, "{q}", output=Review, dtype_backend=backend)
        assert again.attrs["llmframe"]["cached"] == 3  # every answered row, from the cache
    assert sim.count == sent
    plans = [frame.llm._plan("{q}", {"model": "openai:m", "api_key": "k", "dtype_backend": b}) for b in BACKENDS]
    assert all(list(p.keys) == list(plans[0].keys) for p in plans)
    pd.testing.assert_series_equal(again["stars"], _arrow(base["stars"], pa.int64()))  # the last: "pyarrow"


def test_a_bad_backend_is_refused_naming_the_valid_values_before_sending(gen, sim, frame):
    message = "dtype_backend must be None, 'numpy_nullable' or 'pyarrow', got 'arrow'"
    with pytest.raises(ConfigError, match=message):
        gen(frame, "{q}", dtype_backend="arrow")
    with pytest.raises(ConfigError, match=message):
        frame.llm.submit("{q}", model="openai:m", api_key="k", mode="online", dtype_backend="arrow")
    with pytest.raises(ConfigError, match=message):
        frame["q"].llm.embed(model="openai:m", api_key="k", dtype_backend="arrow")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['dtype_backend'\]"):
        frame.llm.estimate("{q}", model="openai:m", dtype_backend="pyarrow")  # an estimate builds no columns
    assert sim.count == 0


def test_series_agenerate_submit_and_retry_keep_the_backend(gen, sim, frame):
    keys = dict(model="openai:sim-model", base_url=sim.base_url, api_key=sim.api_key, progress=False)
    answers = frame["q"].llm.generate("{}", dtype_backend="pyarrow", **keys)
    assert answers.dtype == pd.ArrowDtype(pa.large_string()) and answers.index.equals(frame.index)
    fields = frame["q"].llm.generate("{}", output=Review, dtype_backend="numpy_nullable", **keys)
    assert fields["summary"].dtype == pd.StringDtype() and str(fields["stars"].dtype) == "Int64"
    later = asyncio.run(frame.llm.agenerate("{q}", dtype_backend="pyarrow", **keys))
    assert later["response"].dtype == pd.ArrowDtype(pa.large_string())
    job = frame.llm.submit("{q}", mode="online", dtype_backend="pyarrow", **keys)
    pd.testing.assert_frame_equal(job.result(), later)
    sim.answer = _refusing
    failed = gen(frame.assign(q=["refuse one", "refuse two", None, "fine"]), "{q}", dtype_backend="numpy_nullable")
    assert failed["response"].isna().sum() == 3
    sim.answer = default_answer
    retried = failed.llm.retry_failed()
    assert retried["response"].dtype == pd.StringDtype() and retried["response"].isna().sum() == 1  # the None row


@pytest.fixture
def embed(sim):
    """obj.llm.embed against the simulator's OpenAI route, without a progress bar."""
    def call(obj, template="{}", **kwargs):
        return obj.llm.embed(template, model="openai:sim-model", base_url=sim.base_url, api_key=sim.api_key,
                             progress=False, **kwargs)
    return call


def test_embed_takes_the_backend_for_its_error_and_usage_columns(embed, sim):
    texts = pd.Series(["red apple", "green pear"], index=[5, 6])
    base = embed(texts.to_frame("text"), "{text}", dimensions=8, usage=True)
    arrow = embed(texts.to_frame("text"), "{text}", dimensions=8, usage=True, dtype_backend="pyarrow")
    assert arrow["embedding"].dtype == base["embedding"].dtype  # vectors are ArrowDtype in every backend
    np.testing.assert_array_equal(llmframe.vectors(arrow["embedding"]), llmframe.vectors(base["embedding"]))
    pd.testing.assert_series_equal(arrow["embedding_error"], _arrow(base["embedding_error"], pa.large_string()))
    for column in (c for c in base if c.startswith("embedding_") and c != "embedding_error"):  # usage columns
        assert isinstance(arrow[column].dtype, pd.ArrowDtype), column
    nullable = embed(texts.to_frame("text"), "{text}", dimensions=8, dtype_backend="numpy_nullable")
    assert nullable["embedding_error"].dtype == pd.StringDtype()
    assert arrow.attrs["llmframe"]["cached"] == 2 and nullable.attrs["llmframe"]["cached"] == 2
