"""embed, search, sim_join and dedup on Polars (DataFrame, Series, expressions), through the same code as pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

import llmframe
from llmframe.errors import ConfigError, TemplateError
from llmframe.testing import Faults

from .test_embed import MODEL, embed, texts  # noqa: F401  (the fixture)


def test_polars_frame_gets_an_array_column_and_shares_the_pandas_cache(sim, embed):
    rows = texts(60)
    pandas_out = embed(pd.DataFrame({"text": rows}), "{text}", dimensions=8)
    sent = sim.count
    out = embed(pl.DataFrame({"text": rows}), "{text}", dimensions=8)
    assert sim.count == sent and out.llm.report["cached"] == 60  # the same keys: nothing sent again
    assert out.columns == ["text", "embedding", "embedding_error"]
    assert out.schema["embedding"] == pl.Array(pl.Float32, 8) and out["embedding_error"].is_null().all()
    np.testing.assert_array_equal(llmframe.vectors(out["embedding"]), llmframe.vectors(pandas_out["embedding"]))


def test_polars_series_and_the_2d_view_without_a_copy(embed):
    out = embed(pl.Series("t", texts(30)), dimensions=8)
    assert isinstance(out, pl.Series) and out.dtype == pl.Array(pl.Float32, 8) and out.len() == 30
    matrix = llmframe.vectors(out)
    assert matrix.shape == (30, 8) and matrix.dtype == np.float32
    assert np.shares_memory(matrix, out.to_numpy())  # Polars' own buffer, not a copy
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1, rtol=1e-5)


def test_the_expression_embeds_when_the_query_runs(sim, embed):
    kw = dict(model=MODEL, base_url=sim.base_url, api_key=sim.api_key, dimensions=8, progress=False)
    df = pl.DataFrame({"title": ["red apple", "blue car"], "body": ["pie", "engine"]})
    lazy = df.lazy().with_columns(pl.struct("title", "body").llm.embed("{title}: {body}", **kw).alias("vec"),
                                  pl.col("title").llm.embed(**kw).alias("title_vec"))
    assert sim.count == 0 and lazy.collect_schema()["vec"] == pl.Array(pl.Float32, 8)
    out = lazy.collect()
    assert out.schema["vec"] == pl.Array(pl.Float32, 8) and out["vec"].null_count() == 0
    same = embed(pl.Series(["red apple: pie", "blue car: engine"]), dimensions=8)
    np.testing.assert_array_equal(llmframe.vectors(out["vec"]), llmframe.vectors(same))
    with pytest.raises(ConfigError, match="dimensions"):  # checked when the expression is made
        pl.col("title").llm.embed(**{**kw, "dimensions": 0})


def test_search_sim_join_and_dedup_on_polars_match_pandas(sim, embed):
    names = ["red apple pie", "red apple pie!", "blue car engine", "green tea cup"]
    kw = dict(model=MODEL, base_url=sim.base_url, api_key=sim.api_key, dimensions=64)
    pdf = embed(pd.DataFrame({"name": names}), "{name}", dimensions=64)
    df = embed(pl.DataFrame({"name": names}), "{name}", dimensions=64)
    hits = df.llm.search("apple pie", k=2, **kw)
    assert hits["name"].to_list() == names[:2] and hits["score"][0] > 0.5
    np.testing.assert_allclose(hits["score"].to_numpy(), pdf.llm.search("apple pie", k=2, **kw)["score"])
    assert df.llm.dedup(threshold=0.95)["group"].to_list() == [0, 0, 1, 2]
    assert df.llm.dedup(threshold=0.95, keep="first")["name"].to_list() == [names[0], names[2], names[3]]
    other = embed(pl.DataFrame({"name": ["apple pie red", "engine of a blue car"]}), "{name}", dimensions=64)
    pairs = df.llm.sim_join(other, k=1, threshold=0.5)
    assert {"name_left", "embedding_left", "name_right", "score"} <= set(pairs.columns)
    assert set(zip(pairs["name_left"], pairs["name_right"])) >= {("red apple pie", "apple pie red"),
                                                                ("blue car engine", "engine of a blue car")}
    with pytest.raises(ConfigError, match="Polars DataFrame"):
        df.llm.sim_join(pdf)


def test_a_polars_column_of_mixed_lengths_is_refused_naming_the_row():
    df = pl.DataFrame({"embedding": [[1.0, 0.0], [0.0, 1.0, 0.0]]})
    with pytest.raises(ConfigError, match="mixes vector lengths: row 1 has 3"):
        df.llm.search([1.0, 0.0])


@pytest.mark.parametrize("frame", [pd.DataFrame, pl.DataFrame])
def test_retry_failed_repeats_embed_sending_only_the_failed_rows(sim, embed, frame):
    sim.faults = Faults(error_rates={400: 0.3}, seed=5)
    out = embed(frame({"text": texts(120, seed=4)}), "{text}", dimensions=8, batch_size=10)
    failed = out.llm.report["failed"]
    assert failed > 0
    sim.faults = Faults()
    sent = sim.count
    again = out.llm.retry_failed()
    assert again.llm.report["failed"] == 0 and again.llm.report["cached"] == 120 - failed
    assert list(again.columns) == ["text", "embedding", "embedding_error"]
    assert sim.count - sent <= failed  # the failed rows only, in packs


def test_polars_embed_takes_the_embed_options_in_the_tables_order():
    import inspect

    from llmframe import options
    from llmframe.faces.polars import DataFrameNamespace, ExprNamespace, SeriesNamespace

    for namespace in (DataFrameNamespace, SeriesNamespace, ExprNamespace):
        params = [p for p in inspect.signature(namespace.embed).parameters.values() if p.kind is p.KEYWORD_ONLY]
        assert [p.name for p in params] == [o.name for o in options.EMBED_OPTIONS]
    with pytest.raises(ConfigError, match="dtype_backend"):
        pl.Series(["a"]).llm.embed(dtype_backend="pyarrow")


def test_a_lazyframe_embeds_when_collected_with_its_schema_known_up_front(sim, embed):
    rows = texts(40)
    lazy = pl.LazyFrame({"text": [*rows, None], "n": range(41)}).filter(pl.col("n") >= 0)
    query = embed(lazy, "{text}", dimensions=8, usage=True)
    assert isinstance(query, pl.LazyFrame) and sim.count == 0, "nothing is sent before collect()"
    schema = query.collect_schema()
    assert schema["embedding"] == pl.Array(pl.Float32, 8) and schema["embedding_error"] == pl.String
    assert "embedding_input_tokens" in schema
    out = query.collect()
    assert out.schema == schema and out["embedding"].null_count() == 1 and sim.count >= 1
    eager = embed(pl.DataFrame({"text": rows}), "{text}", dimensions=8)
    np.testing.assert_array_equal(llmframe.vectors(out["embedding"][:40]), llmframe.vectors(eager["embedding"]))


def test_a_lazyframe_embed_is_checked_when_made(sim, embed):
    lazy = pl.LazyFrame({"text": ["a"]})
    with pytest.raises(TemplateError, match="nope"):
        embed(lazy, "{nope}", dimensions=8)
    with pytest.raises(ConfigError, match="pass dimensions="):  # a compatible server's model: length unknown
        embed(lazy, "{text}", model="openai:my-embedder")
    assert sim.count == 0
