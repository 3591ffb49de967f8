"""`llmframe run`: the real console script in a subprocess, against the simulator in this process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmframe.apps import cli
from llmframe import constants, options
from llmframe.options import PASSED_ON as _OPTIONS

from .conftest import MODEL, answers_read

# The installed console script when there is one (CI installs it), else the same entry point via -m.
LLMFRAME = [shutil.which("llmframe")] if shutil.which("llmframe") else [sys.executable, "-m", "llmframe"]


def llmframe(*args, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command to its end; the cache directory and PYTHONPATH come from this process's environment."""
    return subprocess.run([*LLMFRAME, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def run_args(sim, *extra) -> list:
    return ["--model", MODEL, "--base-url", sim.base_url, "--api-key", sim.api_key, *extra]


def typed_table(rows: int) -> pa.Table:
    """Columns of the kinds that must pass through untouched: dictionary, nested, tz timestamps, unsigned, binary."""
    return pa.table({
        "id": pa.array(range(rows), pa.uint32()),
        "text": pa.array([f"review number {i}" for i in range(rows)], pa.large_string()),
        "cat": pa.array(["good", "bad", "meh"] * (rows // 3) + ["good"] * (rows % 3)).dictionary_encode(),
        "nested": pa.array([{"tags": [f"t{i}", "x"], "score": i / 2} for i in range(rows)]),
        "when": pa.array([i * 1_000_000 for i in range(rows)], pa.timestamp("us", tz="Europe/Paris")),
        "blob": pa.array([bytes([i % 256]) for i in range(rows)], pa.binary()),
    })


def nothing_written(directory: Path, before: set[str]) -> bool:
    return {p.name for p in directory.iterdir()} - {"cache"} == before - {"cache"}  # the test's own cache dir


def test_single_file_types_order_and_same_answers_as_a_notebook(sim, tmp_path):
    table = typed_table(1000)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=333)
    done = llmframe("run", "in.parquet", "out.parquet", "--template", "Sentiment of {text} ({cat})", "--output",
                    "sentiment", "--batch-size", 256, "--temperature", 0, *run_args(sim), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sim.count == 1000
    assert "wrote out.parquet (1,000 rows: 1,000 sent, 0 cached, 0 failed" in done.stderr
    out = pq.read_table(tmp_path / "out.parquet")
    # Input columns exactly as they were, in order, then the new ones.
    assert out.schema.names == [*table.schema.names, "sentiment", "sentiment_error"]
    assert out.select(table.schema.names).cast(table.schema).equals(table)
    for name in table.schema.names:
        assert out.schema.field(name).type == table.schema.field(name).type, name
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 4  # one per chunk of 256
    # The notebook path on the same rows finds every answer in the cache: same keys, same answers, same order.
    frame = pd.read_parquet(tmp_path / "in.parquet")
    again = frame.llm.generate("Sentiment of {text} ({cat})", model=MODEL, output="sentiment", temperature=0,
                               base_url=sim.base_url, api_key=sim.api_key, progress=False)
    assert again.attrs["llmframe"]["requests_sent"] == 0 and sim.count == 1000
    assert out.column("sentiment").to_pylist() == again["sentiment"].tolist()
    assert pd.read_parquet(tmp_path / "out.parquet")["sentiment_error"].isna().all()


def test_structured_output_from_a_module_with_nested_and_enum_fields(sim, tmp_path):
    (tmp_path / "shapes.py").write_text(
        "from typing import Literal\n"
        "from pydantic import BaseModel\n"
        "class Part(BaseModel):\n    name: str\n    weight: float\n"
        "class Review(BaseModel):\n    stars: int\n    mood: Literal['up', 'down']\n    parts: list[Part]\n"
    )
    pd.DataFrame({"text": ["a", "b", None, "a"]}, index=[10, 11, 12, 13]).to_parquet(tmp_path / "in.parquet")
    done = llmframe("run", "in.parquet", "out.parquet", "-t", "Review {text}", "--schema", "shapes:Review",
                    "--prefix", "r_", *run_args(sim), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    back = pd.read_parquet(tmp_path / "out.parquet")
    assert list(back.index) == [10, 11, 12, 13]  # pandas' index survives, new columns learned their dtypes
    assert list(back.columns) == ["text", "r_stars", "r_mood", "r_parts", "r_review_error"]
    assert str(back["r_stars"].dtype) == "Int64" and isinstance(back["r_mood"].dtype, pd.CategoricalDtype)
    assert back["r_stars"].isna().tolist() == [False, False, True, False]
    assert back["r_review_error"].iloc[2].startswith("skipped: missing value")
    parts = json.loads(back["r_parts"].iloc[0])  # nested fields are JSON text: they have no fixed Arrow type
    assert isinstance(parts, list) and all(set(p) == {"name", "weight"} for p in parts)
    assert sim.count == 2  # the duplicate row and the missing value were not sent


def test_provenance_is_recorded_without_keys_and_info_prints_it(sim, tmp_path):
    schema = {"title": "Verdict", "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    (tmp_path / "verdict.json").write_text(json.dumps(schema))
    pd.DataFrame({"q": [f"question {i}" for i in range(20)]}).to_parquet(tmp_path / "in.parquet")
    given, env_key = "sk-given-0123456789abcdef", "sk-environment-0123456789abcdef"
    done = llmframe("run", "in.parquet", "out.parquet", "-t", "Is it fine? {q}", "--schema", "verdict.json",
                    "--system", "Be brief.", "--max-tokens", 50, "--param", "presence_penalty=0.5",
                    "--provider-option", f"default_headers={json.dumps({'X-Key': given})}",
                    "--model", MODEL, "--base-url", sim.base_url, "--api-key", given, cwd=tmp_path,
                    env={"OPENAI_API_KEY": env_key})
    assert done.returncode == 0, done.stderr
    raw = (tmp_path / "out.parquet").read_bytes()
    assert given.encode() not in raw and env_key.encode() not in raw
    meta = json.loads(pq.read_schema(tmp_path / "out.parquet").metadata[constants.PROVENANCE_KEY.encode()])
    assert meta["template"] == "Is it fine? {q}" and meta["model"] == MODEL
    assert meta["parameters"]["system"] == "Be brief." and meta["parameters"]["max_tokens"] == 50
    assert meta["parameters"]["params"] == {"presence_penalty": 0.5}
    assert "api_key" not in meta["parameters"] and meta["parameters"]["provider_options"] == {"default_headers": "***"}
    assert meta["output"]["json_schema"] == schema and meta["output"]["columns"] == ["ok", "verdict_error"]
    assert meta["llmframe_version"] and meta["report"]["rows"] == 20 and meta["report"]["requests_sent"] == 20
    shown = llmframe("info", "out.parquet", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for text in ("20 rows", "Is it fine? {q}", MODEL, "max_tokens=50", "Verdict (from verdict.json)", "requests_sent"):
        assert text in shown.stdout, (text, shown.stdout)
    as_json = json.loads(llmframe("info", "out.parquet", "--json", cwd=tmp_path).stdout)
    assert as_json[0]["provenance"] == meta


@pytest.mark.slow
def test_dataset_directory_in_directory_or_one_file_out(sim, tmp_path):
    data = tmp_path / "data"
    (data / "year=2025").mkdir(parents=True)
    pq.write_table(pa.table({"t": [f"a{i}" for i in range(30)]}), data / "part-0.parquet")
    pq.write_table(pa.table({"t": [f"b{i}" for i in range(20)]}), data / "year=2025" / "part-1.parquet")
    pq.write_table(pa.table({"t": pa.array([], pa.string())}), data / "part-2.parquet")
    (data / "_SUCCESS").write_text("")
    done = llmframe("run", "data", "out", "-t", "Echo {t}", *run_args(sim), "--batch-size", 7, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert files == ["part-0.parquet", "part-2.parquet", "year=2025/part-1.parquet"]
    first = pq.read_table(tmp_path / "out" / "part-0.parquet")
    assert first.column("t").to_pylist() == [f"a{i}" for i in range(30)] and first.column("response").null_count == 0
    assert pq.read_table(tmp_path / "out" / "part-2.parquet").num_rows == 0
    meta = json.loads(pq.read_schema(tmp_path / "out" / "year=2025" / "part-1.parquet").metadata[b"llmframe"])
    assert meta["report"]["rows"] == 20 and meta["input"].endswith("part-1.parquet")
    assert "50 rows in 3 files" in llmframe("info", "out", cwd=tmp_path).stdout
    # The same dataset into one file: every row, files in sorted order, all from the cache now.
    before = sim.count
    one = llmframe("run", "data", "all.parquet", "-t", "Echo {t}", *run_args(sim), cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert pq.read_table(tmp_path / "all.parquet").column("t").to_pylist() == \
        [f"a{i}" for i in range(30)] + [f"b{i}" for i in range(20)]
    assert sim.count == before


@pytest.mark.slow
def test_dataset_files_with_other_columns(sim, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"t": ["a", "b"]}), data / "0.parquet")
    pq.write_table(pa.table({"t": ["c"], "extra": [1]}), data / "1.parquet")
    each = llmframe("run", "data", "out", "-t", "Echo {t}", *run_args(sim), cwd=tmp_path)
    assert each.returncode == 0, each.stderr
    assert pq.read_schema(tmp_path / "out" / "1.parquet").names == ["t", "extra", "response", "response_error"]
    one = llmframe("run", "data", "one.parquet", "-t", "Echo {t}", *run_args(sim), cwd=tmp_path)
    assert one.returncode == 2 and "cannot go into one file" in one.stderr
    pq.write_table(pa.table({"u": ["d"]}), data / "2.parquet")
    missing = llmframe("run", "data", "out2", "-t", "Echo {t}", *run_args(sim), cwd=tmp_path)
    assert missing.returncode == 2 and "'t'" in missing.stderr, missing.stderr
    assert not (tmp_path / "out2").exists() and not (tmp_path / "one.parquet").exists()
    assert not list(tmp_path.glob(".*"))  # no partial output left behind either


@pytest.mark.slow
def test_csv_and_json_lines_in(sim, tmp_path):
    pd.DataFrame({"name": ["ann", "bob"], "age": [31, 42]}).to_csv(tmp_path / "people.csv", index=False)
    (tmp_path / "people.jsonl").write_text('{"name": "ann", "age": 31}\n{"name": "bob", "age": 42}\n')
    for source in ("people.csv", "people.jsonl"):
        done = llmframe("run", source, f"{source}.parquet", "-t", "{name} is {age}", *run_args(sim), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        out = pd.read_parquet(tmp_path / f"{source}.parquet")
        assert out["name"].tolist() == ["ann", "bob"] and out["age"].tolist() == [31, 42]
        assert out["response"].notna().all()
    assert sim.count == 2  # the same prompts from both files: the second run was all cached


def test_errors_raise_writes_nothing_and_exits_1_column_mode_exits_0(sim, tmp_path):
    from llmframe.testing import SimulatedError

    def answer(body):
        if "row 3" in json.dumps(body):
            raise SimulatedError(400, "row 3 is not allowed")
        return "fine"

    sim.answer = answer
    pd.DataFrame({"x": [f"row {i}" for i in range(10)]}).to_parquet(tmp_path / "in.parquet")
    before = {p.name for p in tmp_path.iterdir()}
    failed = llmframe("run", "in.parquet", "out.parquet", "-t", "{x}", "--errors", "raise", "--batch-size", 4,
                      *run_args(sim), cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert "1 rows failed with --errors raise" in failed.stderr and "row 3 is not allowed" in failed.stderr
    assert nothing_written(tmp_path, before)
    assert sim.count == 10  # every chunk still ran, so a re-run sends only the failed row
    kept = llmframe("run", "in.parquet", "out.parquet", "-t", "{x}", *run_args(sim), cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert sim.count == 11
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["response"].isna().tolist() == [i == 3 for i in range(10)]
    assert "row 3 is not allowed" in out["response_error"].iloc[3]


@pytest.mark.slow
def test_batch_mode_one_job_per_chunk_then_all_cached(sim, tmp_path):
    pd.DataFrame({"x": [f"row {i}" for i in range(7)]}).to_parquet(tmp_path / "in.parquet")
    args = ["-t", "{x}", "--mode", "batch", "--poll-interval", "0.1", "--batch-size", 3, *run_args(sim)]
    done = llmframe("run", "in.parquet", "out.parquet", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["x"].tolist() == [f"row {i}" for i in range(7)] and out["response"].notna().all()
    report = json.loads(pq.read_schema(tmp_path / "out.parquet").metadata[b"llmframe"])["report"]
    assert report["mode"] == "batch" and len(report["batch_job"]) == 3 and report["requests_sent"] == 7
    again = llmframe("run", "in.parquet", "out.parquet", *args, "--overwrite", cwd=tmp_path)
    assert again.returncode == 0 and "0 sent, 7 cached" in again.stderr, again.stderr


def test_max_cost_caps_the_whole_run_and_writes_nothing(sim, tmp_path):
    pd.DataFrame({"x": [f"row {i}" for i in range(20)]}).to_parquet(tmp_path / "in.parquet")
    prices = json.dumps({MODEL: {"input_mtok": 100_000, "output_mtok": 100_000}})  # about $1 a request
    done = llmframe("run", "in.parquet", "out.parquet", "-t", "{x}", "--prices", prices, "--max-cost", 3,
                    "--max-tokens", 5, "--batch-size", 5, "--max-concurrency", 1, *run_args(sim), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "max_cost=" in done.stderr and "nothing written to out.parquet" in done.stderr
    assert not (tmp_path / "out.parquet").exists()
    assert 0 < sim.count < 5  # the cap held across the run, not per chunk


def test_progress_on_stderr_and_quiet(sim, tmp_path):
    pd.DataFrame({"x": [f"p {i}" for i in range(50)]}).to_parquet(tmp_path / "in.parquet")
    shown = llmframe("run", "in.parquet", "a.parquet", "-t", "{x}", "--progress", *run_args(sim), cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout == ""
    assert "50/50" in shown.stderr and "cached=0" in shown.stderr and "wrote a.parquet" in shown.stderr
    quiet = llmframe("run", "in.parquet", "b.parquet", "-t", "{x}", "--quiet", *run_args(sim), cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


BAD_INPUTS = [
    ("missing file", ["run", "nope.parquet", "out.parquet", "-t", "{x}"], "input nope.parquet does not exist"),
    ("not parquet", ["run", "garbage.parquet", "out.parquet", "-t", "{x}"], "cannot read garbage.parquet as PARQUET"),
    ("unknown column", ["run", "in.parquet", "out.parquet", "-t", "{nope}"], "nope"),
    ("output is input", ["run", "in.parquet", "in.parquet", "-t", "{x}"], "is the input"),
    ("output exists", ["run", "in.parquet", "exists.parquet", "-t", "{x}"], "exists: pass --overwrite"),
    ("output clash", ["run", "in.parquet", "out.parquet", "-t", "{x}", "-o", "x"], "already has column(s) ['x']"),
    ("bad model", ["run", "in.parquet", "out.parquet", "-t", "{x}", "--model", "nobody:m"], "unknown provider"),
    ("bad schema", ["run", "in.parquet", "out.parquet", "-t", "{x}", "--schema", "nomodule:Nope"], "cannot load"),
    ("bad option", ["run", "in.parquet", "out.parquet", "-t", "{x}", "--temperature", "-3"], "temperature"),
    ("no template", ["run", "in.parquet", "out.parquet"], "--template"),
]


@pytest.mark.parametrize("args, message", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(sim, tmp_path, args, message):
    pd.DataFrame({"x": ["a", "b"]}).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "garbage.parquet").write_bytes(b"this is not parquet at all")
    (tmp_path / "exists.parquet").write_bytes(b"keep me")
    before = {p.name for p in tmp_path.iterdir()}
    model = [] if "--model" in args else ["--model", MODEL]
    done = llmframe(*args, *model, "--base-url", sim.base_url, "--api-key", sim.api_key, cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert message in done.stderr, done.stderr
    assert nothing_written(tmp_path, before) and (tmp_path / "exists.parquet").read_bytes() == b"keep me"
    assert sim.count == 0


FACT = {"title": "Fact", "type": "object", "properties": {"year": {"type": "integer"}}, "required": ["year"]}
INDEX_CLASHES = [
    ("named index", pd.Index(["a", "b"], name="label"), ["-o", "label"], "index already has level(s) named ['label']"),
    ("multiindex level", pd.MultiIndex.from_tuples([("fr", 2020), ("de", 2021)], names=["country", "year"]),
     ["--schema", "fact.json"], "index already has level(s) named ['year']"),
    ("unnamed index", pd.Index([5, 9]), ["-o", "__index_level_0__"], "already has column(s) ['__index_level_0__']"),
]


@pytest.mark.parametrize("index, args, message", [c[1:] for c in INDEX_CLASHES], ids=[c[0] for c in INDEX_CLASHES])
def test_an_answer_column_named_like_the_stored_index_is_refused(sim, tmp_path, index, args, message):
    # pandas keeps its index as columns of the Parquet file: an answer column of that name would be lost.
    pd.DataFrame({"x": ["p", "q"]}, index=index).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "fact.json").write_text(json.dumps(FACT))
    before = {p.name for p in tmp_path.iterdir()}
    done = llmframe("run", "in.parquet", "out.parquet", "-t", "{x}", *args, *run_args(sim), cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert message in done.stderr, done.stderr
    assert nothing_written(tmp_path, before) and sim.count == 0


def test_a_run_whose_rows_mostly_fail_warns_once_for_all_its_chunks(sim, tmp_path):
    from llmframe.testing import SimulatedError

    def answer(body):
        if "row 3" in json.dumps(body):
            return "fine"
        raise SimulatedError(400, "not allowed")

    sim.answer = answer
    pd.DataFrame({"x": [f"row {i}" for i in range(12)]}).to_parquet(tmp_path / "in.parquet")
    done = llmframe("run", "in.parquet", "out.parquet", "-t", "{x}", "--batch-size", 4, "--quiet", *run_args(sim),
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # the errors are in the error column, as asked
    assert done.stderr.count("RuntimeWarning") == 1, done.stderr  # three chunks, one warning, even with --quiet
    assert "11 of 12 rows failed (first error: HTTP 400: not allowed)" in done.stderr
    assert pd.read_parquet(tmp_path / "out.parquet")["response"].notna().sum() == 1


@pytest.mark.slow
def test_sigkill_mid_run_leaves_no_output_and_a_rerun_sends_only_the_missing_rows(sim, tmp_path):
    rows = 3000
    sim.latency = 0.05  # 8 at a time: the first 1200 take several seconds, the whole input about 20
    pd.DataFrame({"x": [f"row {i}" for i in range(rows)]}).to_parquet(tmp_path / "in.parquet")
    command = [*LLMFRAME, "run", "in.parquet", "out.parquet", "-t", "{x}", "--batch-size", "500",
               "--max-concurrency", "8", *run_args(sim)]
    client = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while sim.count < 1200:  # past the first chunks, so some row groups were written to the partial file
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, "the client made no progress"
            time.sleep(0.01)
        client.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        client.wait(30)
    finally:
        client.kill()
    served = sim.count
    long_read = answers_read(sim, by=killed - 3)  # answers are written every 0.2 s: these must all be kept
    assert long_read, "the client had read answers seconds before the kill"
    assert not (tmp_path / "out.parquet").exists()  # no truncated file that looks finished
    assert list(tmp_path.glob(f".out.parquet.*{constants.PARTIAL_SUFFIX}"))  # the partial one is hidden aside
    sim.latency = 0.0
    done = llmframe("run", "in.parquet", "out.parquet", "-t", "{x}", *run_args(sim), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sent = sim.count - served
    report = json.loads(pq.read_schema(tmp_path / "out.parquet").metadata[b"llmframe"])["report"]
    assert report["requests_sent"] == sent and report["cached"] == rows - sent
    resent = {entry.body["messages"][-1]["content"] for entry in sim.requests[served:]}
    assert not long_read & resent, "only what was in flight or unwritten in the last moments is sent again"
    assert pd.read_parquet(tmp_path / "out.parquet")["x"].tolist() == [f"row {i}" for i in range(rows)]
    assert not list(tmp_path.glob(f".out.parquet.*{constants.PARTIAL_SUFFIX}"))  # the killed run's leftover is gone


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_nothing_written(sim, tmp_path):
    sim.latency = 0.05
    pd.DataFrame({"x": [f"row {i}" for i in range(2000)]}).to_parquet(tmp_path / "in.parquet")
    before = {p.name for p in tmp_path.iterdir()}
    client = subprocess.Popen([*LLMFRAME, "run", "in.parquet", "out.parquet", "-t", "{x}", *run_args(sim)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while sim.count < 100:
            assert client.poll() is None and time.monotonic() < deadline, client.communicate()
            time.sleep(0.01)
        client.send_signal(signal.SIGTERM)
        _, err = client.communicate(timeout=30)
    finally:
        client.kill()
    assert client.returncode == 130, err
    assert "interrupted; nothing written" in err
    assert nothing_written(tmp_path, before)


def test_every_generate_option_has_a_flag_and_reaches_generate():
    flags = {f.name for f in cli.GENERATE_FLAGS}
    # progress is --progress / --quiet, for the whole run; the run callbacks are functions, which no flag can give
    assert _OPTIONS - {"progress"} - options.CALLBACKS <= flags
    assert not options.CALLBACKS & flags
    args = cli.build_parser().parse_args([
        "run", "in.parquet", "out.parquet", "-t", "{x}", "-m", MODEL, "--mode", "batch", "--poll-interval", "30",
        "--cache", "off", "--stop", "a", "--stop", "b", "--param", "n=2", "--param", "user=me", "--no-strict",
        "--structured", "json_object",
    ])
    assert cli.generate_options(args) == {"mode": "batch", "poll_interval": 30, "cache": False, "stop": ["a", "b"],
                                          "params": {"n": 2, "user": "me"}, "strict": False,
                                          "structured": "json_object"}


def test_cache_takes_a_shared_store_url_whose_password_never_shows(capsys):
    from llmframe.cacheurl import CacheURL

    def cache(value):
        args = cli.build_parser().parse_args(["run", "i.parquet", "o.parquet", "-t", "{x}", "-m", MODEL,
                                              "--cache", value])
        return cli.generate_options(args)["cache"]

    assert [cache(w) for w in ("on", "refresh", "off")] == [True, "refresh", False]
    url = cache("postgresql://team:s3cret-pw@db.internal/answers")
    assert isinstance(url, CacheURL) and url.url.endswith("@db.internal/answers")
    assert "s3cret" not in repr(url) + str(url) and str(url) == "postgresql://team:***@db.internal/answers"
    for bad in ("maybe", "mysql://team:s3cret-pw@db/answers"):
        with pytest.raises(SystemExit) as exit_:
            cache(bad)
        said = capsys.readouterr().err
        assert exit_.value.code == 2 and "--cache: expected on, refresh, off or a postgresql:// URL" in said
        assert "s3cret" not in said


def test_a_rerun_of_a_file_is_answered_from_the_memo_every_chunk_of_it(sim, tmp_path):
    """Each chunk of the file keeps its own memo (issue 28), not only the last one: a re-run sends nothing and renders
    no row; a changed row sends only itself, the other chunks still come from the memo."""
    table = pa.table({"text": [f"review number {i}" for i in range(1000)], "id": list(range(1000))})
    pq.write_table(table, tmp_path / "in.parquet")
    args = ["-t", "Sentiment of {text}", "--batch-size", 256, *run_args(sim)]
    first = llmframe("run", "in.parquet", "out.parquet", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    memos = sorted((Path(os.environ[constants.CACHE_ENV_VAR]) / constants.MEMO_DIRECTORY).glob("*.arrow"))
    assert len(memos) == 4 and sim.count == 1000  # one per chunk of 256

    def report() -> dict:
        return json.loads(pq.read_schema(tmp_path / "out.parquet").metadata[b"llmframe"])["report"]

    again = llmframe("run", "in.parquet", "out.parquet", *args, "--overwrite", cwd=tmp_path)
    assert again.returncode == 0 and "0 sent, 1,000 cached" in again.stderr, again.stderr
    assert report()["memo_rows"] == 1000 and sim.count == 1000
    answers = pq.read_table(tmp_path / "out.parquet").column("response").to_pylist()
    changed = table.set_column(0, "text", pa.array([*table.column("text").to_pylist()[:600], "a new review",
                                                     *table.column("text").to_pylist()[601:]]))
    pq.write_table(changed, tmp_path / "in.parquet")
    edited = llmframe("run", "in.parquet", "out.parquet", *args, "--overwrite", cwd=tmp_path)
    assert edited.returncode == 0 and "1 sent, 999 cached" in edited.stderr, edited.stderr
    assert report()["memo_rows"] == 1000 - 256 and sim.count == 1001  # row 600's chunk (512-767) per row
    out = pq.read_table(tmp_path / "out.parquet").column("response").to_pylist()
    assert out[:600] == answers[:600] and out[601:] == answers[601:] and out[600] != answers[600]
    # The edited chunk (one memo chunk, none of it unchanged) got a memo of its own; the old one is left to the bound.
    assert len(list((Path(os.environ[constants.CACHE_ENV_VAR]) / constants.MEMO_DIRECTORY).glob("*.arrow"))) == 5
