"""The core on rows that are not pandas, and the pandas face's conversion of the collector's Arrow columns."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from llmframe.collect import arrays
from llmframe.collect.columns import collect
from llmframe.engine import run as engine
from llmframe.engine.loop import run_sync
from llmframe.faces.frames import rows_of, series
from llmframe.faces.planning import plan
from llmframe.testing import digest_answer

from .conftest import MODEL


class ListRows:
    """The rows interface over a dict of Python lists: what a face for another frame library provides."""

    nulls = ()
    index_names = ()

    def __init__(self, data: dict[str, list]):
        self.data = data
        self.columns = list(data)

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))

    def values(self, column, positions=None) -> list:
        values = self.data[column]
        return list(values) if positions is None else [values[i] for i in positions.tolist()]

    def missing(self, column) -> np.ndarray:
        return np.array([v is None for v in self.data[column]], dtype=bool)

    def holds_objects(self, column) -> bool:
        return any(not isinstance(v, (str, int, float, type(None))) for v in self.data[column])

    def records(self):
        return zip(*self.data.values())

    def label(self, position: int) -> int:
        return position


def test_the_core_plans_runs_and_collects_rows_that_are_not_pandas(sim):
    data = {"title": ["a", "b", "a", None], "n": [1, 2, 1, 4], "tags": [["x"], [], ["x"], ["y"]]}
    options = dict(model=MODEL, base_url=sim.base_url, api_key=sim.api_key, progress=False, usage=True,
                   prices={MODEL: {"input_mtok": 1.0, "output_mtok": 2.0}})
    run = plan(ListRows(data), "Summarise {title} ({n}) {tags}", **options)
    from_pandas = plan(rows_of(pd.DataFrame(data)), "Summarise {title} ({n}) {tags}", **options)
    assert list(run.keys) == list(from_pandas.keys), "every face renders the same prompts, so the same cache keys"
    columns, report = collect(run, run_sync(engine.start(run)))
    assert all(isinstance(c, (pa.Array, pa.ChunkedArray)) for c in columns.values())
    assert columns["response"].to_pylist() == [digest_answer('Summarise a (1) ["x"]'),
                                               digest_answer("Summarise b (2) []"),
                                               digest_answer('Summarise a (1) ["x"]'), None]
    assert columns["response_error"].to_pylist() == [None, None, None, "skipped: missing value in column 'title'"]
    assert columns["response_cached"].to_pylist() == [False, False, True, None]
    assert report["deduplicated"] == 1 and report["skipped"] == 1 and sim.count == 2


def test_a_template_function_gets_each_row_as_a_dict_from_any_face(sim):
    run = plan(ListRows({"q": ["one", "two"]}), lambda row: None if row["q"] == "two" else f"Q {row['q']}",
                        model=MODEL, base_url=sim.base_url, api_key=sim.api_key, progress=False)
    columns, _ = collect(run, run_sync(engine.start(run)))
    assert columns["response"].to_pylist() == [digest_answer("Q one"), None]


UTC = dt.timezone.utc


@pytest.mark.parametrize(("kind", "cells", "dtype"), [
    ("Int64", [1, None, -(2**63)], "Int64"),
    ("Float64", [1.5, None, float("nan"), 2], "Float64"),
    ("boolean", [True, None, False], "boolean"),
    ("string", ["a", None, "é"], str(pd.Series(["x"]).dtype)),  # pandas' own text dtype: str on pandas 3
    ("datetime", [dt.datetime(2024, 1, 1, 10), None], "datetime64[us]"),
    ("datetime", [dt.datetime(2024, 1, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.datetime(2024, 1, 1)],
     "datetime64[us, UTC]"),
    ("datetime", ["2024-01-01T10:00:00Z", "2024-02-01 00:00:00.5+01:00", None], "datetime64[us, UTC]"),
    ("object", [[1], {"a": 1}, None, (1, 2)], "object"),
    (("a", "b"), ["a", None, "b"], "category"),
    ((1, 2, 3), [3, None, 1], "category"),
])
def test_each_column_kind_becomes_its_pandas_dtype(kind, cells, dtype):
    index = pd.Index([f"r{i}" for i in range(len(cells))])
    out = series(arrays.typed(cells, kind), index)
    assert str(out.dtype) == dtype and out.index.equals(index)
    assert out.isna().tolist() == [c is None or c != c for c in cells]
    if dtype == "category":
        assert out.cat.categories.tolist() == list(kind)
        assert out.dropna().tolist() == [c for c in cells if c is not None]
    elif dtype.startswith("datetime64[us, UTC]"):
        assert out.iloc[0] == pd.Timestamp(cells[0].replace("Z", "+00:00") if isinstance(cells[0], str) else cells[0])
    elif dtype != "object":
        assert out.dropna().tolist() == [c for c in cells if c is not None and c == c]
    else:
        assert out.tolist()[:2] == [[1], {"a": 1}] and out.iloc[3] == (1, 2)


def test_texts_reach_pandas_without_a_copy():
    texts = pa.chunked_array([pa.array(["a", None, "c"], pa.large_string())])
    out = series(texts, pd.RangeIndex(3))
    assert out.dtype == pd.Series(["x"]).dtype and out.tolist()[::2] == ["a", "c"] and pd.isna(out.iloc[1])
    assert out.array._pa_array.chunk(0).buffers()[2].address == texts.chunk(0).buffers()[2].address
