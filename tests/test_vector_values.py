"""Cached embeddings in binary (plan.vector_value): written by online and batch runs, read back exactly, older JSON
values still read, and stats, prune and copy working on them, in diskcache and in PostgreSQL."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

import llmframe
from llmframe import constants
from llmframe.cacheurl import CacheURL
from llmframe.plan import vector_value
from llmframe.stores.diskcache import open_store
from llmframe.stores.postgresql import open_postgres

from .pg import pg_cluster, pg_url  # noqa: F401  (fixtures)
from .test_embed import MODEL, embed, texts  # noqa: F401  (fixture)


def old_value(value: bytes) -> str:
    """A binary value as format 1 wrote it: JSON, the vector's base64 first (earlier versions' shape)."""
    rows = vector_value.read([value])
    vector = rows["vector"][0].astype("<f4").tobytes()
    model, created = vector_value.meta(value)
    return (f'["{base64.b64encode(vector).decode()}",{int(rows["tokens"][0])},0,null,{json.dumps(model)},'
            f'{created},0.01,0]')


def test_a_value_round_trips_and_says_its_model_and_time():
    vectors = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    values = vector_value.encode(vectors, [7, 8, 9], None, "openai:text-embedding-3-small", 1234.5, batch=True)
    assert all(isinstance(v, bytes) and len(v) == vector_value.HEADER_BYTES + 20 + 29 for v in values)
    rows = vector_value.read(values)
    np.testing.assert_array_equal(rows["vector"], vectors)
    assert rows["tokens"].tolist() == [7, 8, 9] and np.isnan(rows["latency"]).all()
    assert (rows["flags"] == vector_value.BATCH).all()
    assert vector_value.meta(values[1]) == ("openai:text-embedding-3-small", 1234.5)
    assert vector_value.read([values[0], values[1][:-1]]) is None, "values of two lengths are not one array"
    assert vector_value.meta(b"[1,2]") is None and vector_value.read([b"LFv\x02" + values[0][4:]]) is None


def test_the_cache_holds_binary_values_and_a_rerun_reads_them_exactly(sim, embed, cache_dir):
    rows = pd.Series(texts(300))
    first = embed(rows, dimensions=16)
    store = open_store(cache_dir)
    values = [v for _k, v in store.entries()]
    assert len(values) == 300 and all(vector_value.is_value(v) for v in values)
    assert len(values[0]) == vector_value.HEADER_BYTES + 16 * 4 + len(MODEL), "4 bytes a number, no text"
    sent = sim.count
    again = embed(rows, dimensions=16)
    assert sim.count == sent and again.attrs["llmframe"]["cached"] == 300
    np.testing.assert_array_equal(llmframe.vectors(again), llmframe.vectors(first))


def test_values_written_as_json_by_older_versions_still_read_beside_binary_ones(sim, embed, cache_dir):
    rows = pd.Series(texts(200))
    first = embed(rows, dimensions=8)
    store = open_store(cache_dir)
    entries = sorted(store.entries())
    store.set_many([(k, old_value(v)) for k, v in entries[::2]], overwrite=True)  # every other one: format 1
    assert sum(isinstance(v, str) for _k, v in store.entries()) == 100
    sent = sim.count
    again = embed(rows, dimensions=8)
    assert sim.count == sent and again.attrs["llmframe"]["cached"] == 200
    np.testing.assert_array_equal(llmframe.vectors(again), llmframe.vectors(first))


def test_a_damaged_binary_value_is_a_miss_and_the_others_still_read(sim, embed, cache_dir):
    rows = pd.Series(texts(50))
    first = embed(rows, dimensions=8)
    store = open_store(cache_dir)
    key, value = next(iter(store.entries()))
    store.set_many([(key, b"LFv\x09" + value[4:])], overwrite=True)  # not a value this version wrote
    sent = sim.count
    again = embed(rows, dimensions=8)
    assert sim.count == sent + 1 and again.attrs["llmframe"]["cached"] == 49, "only the damaged row is asked again"
    np.testing.assert_array_equal(llmframe.vectors(again), llmframe.vectors(first))


def test_stats_prune_and_copy_work_on_binary_values(sim, embed, cache_dir, tmp_path):
    embed(pd.Series(texts(30)), dimensions=8)
    stats = llmframe.cache_stats(cache_dir)
    assert stats["entries"] == 30 and stats["unknown"] == 0 and stats["models"][MODEL]["entries"] == 30
    target = tmp_path / "copy"
    assert llmframe.copy_cache(cache_dir, target) == {"copied": 30, "present": 0}
    assert all(vector_value.is_value(v) for _k, v in open_store(target).entries())
    sent = sim.count
    out = embed(pd.Series(texts(30)), dimensions=8, cache_dir=str(target))
    assert sim.count == sent and out.attrs["llmframe"]["cached"] == 30, "the copy serves a re-run"
    assert llmframe.clear_cache(cache_dir, model="openai:other") == 0
    assert llmframe.clear_cache(cache_dir, model=MODEL) == 30 and len(open_store(cache_dir)) == 0


def test_batch_embeddings_are_cached_in_binary(sim, embed, cache_dir):
    out = embed(pd.Series(texts(20)), dimensions=8, mode="batch", poll_interval=0.05)
    assert out.notna().all()
    values = [v for _k, v in open_store(cache_dir).entries()]
    assert len(values) == 20 and (vector_value.read(values)["flags"] == vector_value.BATCH).all()
    sent = sim.count
    again = embed(pd.Series(texts(20)), dimensions=8)
    assert sim.count == sent and again.attrs["llmframe"]["cached"] == 20
    np.testing.assert_array_equal(llmframe.vectors(again), llmframe.vectors(out))


def test_the_shared_store_keeps_binary_values_as_marked_base64_and_reads_old_ones(sim, embed, pg_url, cache_dir,
                                                                                   pg_cluster):
    rows = pd.Series(texts(40))
    first = embed(rows, dimensions=8, cache=pg_url)
    database = pg_url.rsplit("/", 1)[1]
    assert pg_cluster.execute(f"SELECT DISTINCT left(value, 1), model FROM {constants.PG_TABLE}", database) == [
        ("~", MODEL)]
    store = open_postgres(CacheURL(pg_url))
    entries = list(store.entries())
    assert all(vector_value.is_value(v) for _k, v in entries)
    store.set_many([(k, old_value(v)) for k, v in entries[:10]], overwrite=True)
    sent = sim.count
    again = embed(rows, dimensions=8, cache=pg_url)
    assert sim.count == sent and again.attrs["llmframe"]["cached"] == 40
    np.testing.assert_array_equal(llmframe.vectors(again), llmframe.vectors(first))
    assert store.stats()["models"][MODEL]["entries"] == 40
    assert llmframe.copy_cache(pg_url, cache_dir) == {"copied": 40, "present": 0}
    assert sum(vector_value.is_value(v) for _k, v in open_store(cache_dir).entries()) == 30


def test_a_shared_store_of_format_1_is_raised_so_older_versions_refuse_it(pg_url, pg_cluster):
    database = pg_url.rsplit("/", 1)[1]
    format_of = f"SELECT value FROM {constants.PG_META_TABLE} WHERE name = 'format'"
    store = open_postgres(CacheURL(pg_url))
    assert pg_cluster.execute(format_of, database) == [(str(constants.CACHE_RECORD_FORMAT),)]
    store.close()
    pg_cluster.execute(f"UPDATE {constants.PG_META_TABLE} SET value = '1' WHERE name = 'format'", database)
    open_postgres(CacheURL(pg_url))  # a format-1 store (its answers read as they are) is raised on opening
    assert pg_cluster.execute(format_of, database) == [(str(constants.CACHE_RECORD_FORMAT),)]
