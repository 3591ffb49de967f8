"""search, sim_join and dedup: checked against brute force, blocked so that blocks are smaller than the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import llmframe
from llmframe import constants
from llmframe.errors import ConfigError
from llmframe.ops import vectors as ops

from .test_embed import MODEL, embed  # noqa: F401  (the fixture)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(constants, "VECTOR_BLOCK_ROWS", 7)
    monkeypatch.setattr(ops, "_SCORES_PER_BLOCK", 50)


def unit(m):
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_search_finds_the_brute_force_top_k():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(100, 16)).astype(np.float32)
    q = rng.normal(size=16).astype(np.float32)
    rows, scores = ops.search(m, q, k=5)
    expected = np.argsort(-(unit(m) @ (q / np.linalg.norm(q))))[:5]
    assert rows.tolist() == expected.tolist()
    assert np.all(np.diff(scores) <= 0)


def test_rows_without_a_vector_never_match():
    m = np.array([[1, 0], [np.nan, np.nan], [0.9, 0.1]], dtype=np.float32)
    rows, _ = ops.search(m, np.array([1, 0], np.float32), k=3)
    assert rows.tolist() == [0, 2]
    assert ops.dedup(m, threshold=0.9).tolist() == [0, 1, 0]


def test_sim_join_matches_brute_force_with_a_threshold():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    li, ri, s = ops.sim_join(a, b, k=3, threshold=0.3)
    full = unit(a) @ unit(b).T
    expected = {(i, int(j)) for i in range(30) for j in np.argsort(-full[i])[:3] if full[i, j] >= 0.3}
    assert set(zip(li.tolist(), ri.tolist())) == expected
    np.testing.assert_allclose(s, full[li, ri], rtol=1e-5)


def test_dedup_groups_are_transitive_and_numbered_in_order():
    m = np.array([[1, 0, 0], [0, 1, 0], [0.99, 0.05, 0], [0, 0, 1], [0.98, 0.1, 0]], dtype=np.float32)
    assert ops.dedup(m, threshold=0.99).tolist() == [0, 1, 0, 2, 0]


def test_frame_verbs_on_an_embedded_frame(sim, embed):
    products = pd.DataFrame({"name": ["red apple pie", "red apple pie!", "blue car engine", "green tea cup"]},
                            index=list("abcd"))
    df = embed(products, "{name}", dimensions=64)
    hits = df.llm.search("apple pie", k=2, model=MODEL, base_url=sim.base_url, api_key=sim.api_key,
                         dimensions=64)
    assert list(hits.index) == ["a", "b"] and hits["score"].iloc[0] > 0.5
    groups = df.llm.dedup(threshold=0.95)
    assert groups["group"].tolist() == [0, 0, 1, 2]
    assert list(df.llm.dedup(threshold=0.95, keep="first").index) == ["a", "c", "d"]
    other = embed(pd.DataFrame({"name": ["apple pie red", "engine of a blue car"]}), "{name}", dimensions=64)
    pairs = df.llm.sim_join(other, k=1, threshold=0.5)
    assert set(zip(pairs["name_left"], pairs["name_right"])) >= {("red apple pie", "apple pie red"),
                                                                ("blue car engine", "engine of a blue car")}
    by_vector = df.llm.search(llmframe.vectors(df["embedding"])[2], k=1)
    assert list(by_vector.index) == ["c"]


def test_a_column_of_mixed_lengths_is_refused_naming_the_row():
    df = pd.DataFrame({"embedding": [[1.0, 0.0], [0.0, 1.0, 0.0]]}, index=["x", "y"])
    with pytest.raises(ConfigError, match="mixes vector lengths: the row at index 'y' has 3"):
        df.llm.search([1.0, 0.0])


def test_bad_arguments_of_the_vector_verbs():
    df = pd.DataFrame({"embedding": pd.Series(pa.array([[1.0, 0.0]], pa.list_(pa.float32(), 2)),
                                              dtype=pd.ArrowDtype(pa.list_(pa.float32(), 2)))})
    with pytest.raises(ConfigError, match="no vector column 'vec'"):
        df.llm.search([1.0, 0.0], on="vec")
    with pytest.raises(ConfigError, match="k must be"):
        df.llm.search([1.0, 0.0], k=0)
    with pytest.raises(ConfigError, match="threshold must be"):
        df.llm.dedup(threshold=2)
    with pytest.raises(ConfigError, match="query's vector has 3"):
        df.llm.search([1.0, 0.0, 0.0])


def test_search_remembers_a_columns_row_lengths_for_the_same_numbers_only():
    from llmframe.ops import vectors as ops

    rng = np.random.default_rng(2)
    m = rng.normal(size=(50, 8)).astype(np.float32)
    kind = pa.list_(pa.float32(), 8)
    df = pd.DataFrame({"embedding": pd.Series(pa.FixedSizeListArray.from_arrays(pa.array(m.ravel()), 8),
                                              dtype=pd.ArrowDtype(kind))})
    first = df.llm.search(m[3], k=3)
    matrix = llmframe.vectors(df["embedding"])
    assert ops.remembered_norms(matrix) is ops.remembered_norms(llmframe.vectors(df["embedding"]))
    again = df.llm.search(m[3], k=3)  # from the remembered lengths: the same answer
    assert list(first.index) == list(again.index) and first.index[0] == 3
    np.testing.assert_allclose(again["score"], first["score"])
    other = m.copy()
    ops.remembered_norms(other)
    other *= 3  # other numbers in the same memory (as a freed column's, reused, would hold): their own lengths
    np.testing.assert_allclose(ops.remembered_norms(other), 1 / np.linalg.norm(other, axis=1), rtol=1e-5)
    for n in range(20):  # bounded: only the last few columns are kept
        ops.remembered_norms(rng.normal(size=(5, 8)).astype(np.float32))
    assert len(ops._NORMS) <= ops._NORMS_KEPT




def test_many_queries_at_once_equal_one_at_a_time(sim, embed):
    rng = np.random.default_rng(5)
    m = rng.normal(size=(120, 8)).astype(np.float32)
    m[7] = np.nan
    queries = rng.normal(size=(4, 8)).astype(np.float32)
    rows, scores = ops.search_many(m, queries, k=6)
    for q in range(4):
        one = ops.search(m, queries[q], k=6)
        assert rows[q].tolist() == one[0].tolist() and 7 not in rows[q].tolist()
        np.testing.assert_allclose(scores[q], one[1], rtol=1e-5)  # a product with 4 columns vs 1: rounding
    products = pd.DataFrame({"name": ["red apple pie", "blue car engine", "green tea cup"]}, index=list("abc"))
    df = embed(products, "{name}", dimensions=64)
    hits = df.llm.search(["apple pie", "car engine"], k=1, model=MODEL, base_url=sim.base_url, api_key=sim.api_key,
                         dimensions=64)
    assert list(hits.index) == ["a", "b"] and hits["query"].tolist() == [0, 1]
    mixed = df.llm.search([llmframe.vectors(df["embedding"])[2], "apple"], k=1, model=MODEL, base_url=sim.base_url,
                          api_key=sim.api_key, dimensions=64)
    assert list(mixed.index) == ["c", "a"]
