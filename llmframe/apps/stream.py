"""`llmframe run`: a Parquet file or dataset (or CSV / JSON Lines) in, Parquet out, streamed chunk by chunk.

Each chunk goes through df.llm.generate itself, so cache keys and answers are exactly a notebook's
on the same rows. Input columns never leave Arrow: they are written back as they were read, with
the new columns appended. Memory holds a few chunks, however long the input.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import constants
from . import provenance
from ..errors import BudgetExceeded, ConfigError, RunAborted
from ..engine.progress import Progress, shared, should_show
from ..collect.report import one_warning_for_all_runs, warn_if_mostly_failed

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
_FORMATS = {**dict.fromkeys(PARQUET_SUFFIXES, "parquet"), ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl",
            ".ndjson": "jsonl"}


@dataclass
class Job:
    """One `llmframe run`: where from, where to, and the arguments of generate."""

    source: Path
    dest: Path
    template: Any
    model: str
    output: Any = constants.DEFAULT_OUTPUT
    output_source: str | None = None  # how the user named a schema ("pkg.mod:Class", "schema.json")
    errors: str = "column"
    options: dict = field(default_factory=dict)
    batch_rows: int = constants.STREAM_BATCH_ROWS
    overwrite: bool = False
    progress: bool | None = None  # None: a bar when stderr is a terminal
    quiet: bool = False


@dataclass
class Part:
    """One input file: its Arrow schema, row count (None until read, for CSV / JSON Lines) and output name."""

    path: Path
    name: str  # its output's path inside an output directory
    kind: str
    schema: Any
    rows: int | None

    def tables(self, batch_rows: int) -> Iterator[Any]:
        """The file as Arrow tables of batch_rows rows (the last one shorter); an empty file gives one empty table."""
        empty = True
        for table in _rebatch(_read_batches(self.path, self.kind, batch_rows), batch_rows):
            empty = False
            yield table
        if empty:  # so that it still has an output, with the new columns
            yield self.schema.empty_table()


def open_source(source: Path) -> list[Part]:
    """The input's files, checked readable (a directory: its Parquet files, sorted); nothing is read but footers."""
    if not source.exists():
        raise ConfigError(f"input {source} does not exist")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in PARQUET_SUFFIXES
                       and not any(s.startswith((".", "_")) for s in p.relative_to(source).parts))
        if not files:
            raise ConfigError(f"input directory {source} holds no Parquet files ({', '.join(PARQUET_SUFFIXES)})")
        return [_part(p, p.relative_to(source).as_posix(), "parquet") for p in files]
    return [_part(source, source.name, _FORMATS.get(source.suffix.lower(), "parquet"))]


def _part(path: Path, name: str, kind: str) -> Part:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if kind == "parquet":
            file = pq.ParquetFile(path)
            return Part(path, name, kind, file.schema_arrow, file.metadata.num_rows)
        reader = _open_text(path, kind)
        schema = reader.schema
        reader.close()
        return Part(path, name, kind, schema, None)
    except (pa.ArrowException, OSError) as exc:
        hint = "" if kind != "parquet" or path.suffix in PARQUET_SUFFIXES else \
            " (CSV, TSV and JSON Lines inputs must be named .csv, .tsv, .jsonl or .ndjson)"
        raise ConfigError(f"cannot read {path} as {kind.upper()}: {exc}{hint}") from None


def _open_text(path: Path, kind: str):
    """A streaming pyarrow reader; column types are inferred from the first block."""
    if kind == "jsonl":
        import pyarrow.json as pj

        return pj.open_json(path, read_options=pj.ReadOptions(block_size=constants.CSV_BLOCK_BYTES))
    import pyarrow.csv as pc

    return pc.open_csv(path, read_options=pc.ReadOptions(block_size=constants.CSV_BLOCK_BYTES),
                       parse_options=pc.ParseOptions(delimiter="\t" if kind == "tsv" else ","))


def _read_batches(path: Path, kind: str, batch_rows: int) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if kind == "parquet":
            file = pq.ParquetFile(path)
            metadata = file.schema_arrow.metadata  # pandas' dtypes (nullable ints...) as pd.read_parquet sees them
            for batch in file.iter_batches(batch_size=batch_rows):
                yield batch.replace_schema_metadata(metadata)
        else:
            yield from _open_text(path, kind)
    except pa.ArrowInvalid as exc:
        fix = " (column types come from the file's first 16 MiB)" if kind != "parquet" else ""
        raise ConfigError(f"cannot read {path}: {exc}{fix}") from None


def _rebatch(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """Tables of exactly `rows` rows (the last one shorter), whatever sizes the reader yields."""
    import pyarrow as pa

    pending: list = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == rows:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def check_destination(job: Job, parts: list[Part]) -> bool:
    """Refuse an output that would clobber the input or an existing file; True when the output is a directory."""
    source, dest = job.source.resolve(), job.dest.resolve()
    to_directory = job.source.is_dir() and dest.suffix not in PARQUET_SUFFIXES
    if dest == source:
        raise ConfigError(f"the output {job.dest} is the input: write to another path")
    if job.source.is_dir() and source in dest.parents:
        raise ConfigError(f"the output {job.dest} is inside the input directory {job.source}: write it elsewhere")
    if dest in source.parents:
        raise ConfigError(f"the input {job.source} is inside the output {job.dest}: write it elsewhere")
    if dest.exists() or dest.is_symlink():
        if not job.overwrite:
            raise ConfigError(f"the output {job.dest} exists: pass --overwrite to replace it")
        if dest.is_dir() != to_directory:
            raise ConfigError(f"the output {job.dest} is {'a directory' if dest.is_dir() else 'a file'}; "
                              f"this run writes {'a directory' if to_directory else 'a file'}: choose another path")
        if dest.is_dir():
            strays = [p for p in dest.rglob("*") if p.is_file() and p.suffix not in PARQUET_SUFFIXES]
            if strays:
                raise ConfigError(f"refusing to replace the directory {job.dest}: it holds files that are not "
                                  f"Parquet, e.g. {strays[0]}")
    if not to_directory and len(parts) > 1:
        first = parts[0].schema.remove_metadata()
        for part in parts[1:]:
            if not part.schema.remove_metadata().equals(first):
                raise ConfigError(f"{part.path} has other columns or types than {parts[0].path}, so they cannot "
                                  "go into one file: write to a directory instead (an output path without .parquet)")
    return to_directory


class NewColumns:
    """The columns generate adds, as fixed Arrow types, so every chunk's row group has the same schema."""

    def __init__(self, empty: pd.DataFrame, input_schema):
        import pyarrow as pa

        refuse_index_clash(empty, input_schema)
        names = [c for c in empty.columns if c not in input_schema.names]
        inferred = pa.Table.from_pandas(empty[names], preserve_index=False).schema
        fields = []
        self.as_json: set[str] = set()
        for f in inferred:
            if pa.types.is_null(f.type):  # object columns (nested models, lists, unions): no fixed Arrow type
                self.as_json.add(f.name)
                f = pa.field(f.name, pa.string())
            elif pa.types.is_timestamp(f.type):
                f = pa.field(f.name, pa.timestamp("us", tz="UTC"))
            fields.append(f)
        self.schema = pa.schema(fields, metadata=inferred.metadata)

    def arrow(self, out: pd.DataFrame):
        """The new columns of one chunk's result, as an Arrow table of the fixed schema."""
        import pyarrow as pa

        frame = out[self.schema.names]
        if self.as_json:
            frame = frame.assign(**{name: [_json(v) for v in frame[name]] for name in self.as_json})
        return pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)


def refuse_index_clash(empty: pd.DataFrame, input_schema) -> None:
    """A new column named like a column that holds pandas' index in the file (__index_level_0__...) would be lost."""
    pandas = json.loads((input_schema.metadata or {}).get(b"pandas", b"{}"))
    hidden = {c for c in pandas.get("index_columns", []) if isinstance(c, str)}  # a RangeIndex is a dict: no column
    clash = [c for c in empty.columns if c in hidden]  # not among the frame's own columns: a new one
    if clash:
        raise ConfigError(f"the input already has column(s) {clash} (pandas' index, stored in the file): "
                          "pass another --output name (or --prefix with --schema)")


def _json(value: Any) -> str | None:
    if value is None or value is pd.NA:
        return None
    dump = getattr(value, "model_dump_json", None)
    return dump() if dump is not None else json.dumps(value, ensure_ascii=False, default=str)


def output_schema(input_schema, new: NewColumns):
    """The input's fields and metadata, then the new fields; pandas' metadata learns the new columns' dtypes."""
    import pyarrow as pa

    metadata = dict(input_schema.metadata or {})
    new_pandas = json.loads(new.schema.metadata[b"pandas"])
    if b"pandas" in metadata:
        old = json.loads(metadata[b"pandas"])
        old["columns"] = [*old.get("columns", []), *new_pandas["columns"]]
        metadata[b"pandas"] = json.dumps(old).encode()
    else:
        metadata[b"pandas"] = json.dumps(new_pandas).encode()
    return pa.schema([*input_schema, *new.schema], metadata=metadata)


class _Partial:
    """The output while it is written: beside the destination under a hidden name, moved into place when complete."""

    def __init__(self, dest: Path, directory: bool):
        self.dest, self.directory = dest, directory
        self.path = dest.parent / f".{dest.name}.{os.getpid()}{constants.PARTIAL_SUFFIX}"

    def open(self) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.dest.parent.glob(f".{self.dest.name}.*{constants.PARTIAL_SUFFIX}"):
            pid = stale.name[len(self.dest.name) + 2 : -len(constants.PARTIAL_SUFFIX)]
            if pid.isdigit() and not _alive(int(pid)):  # left by a run that was killed
                _remove(stale)
        if self.directory:
            self.path.mkdir()

    def commit(self) -> None:
        """Replace the destination in one rename (a directory: two, the old one removed afterwards)."""
        for file in [self.path] if not self.directory else [p for p in self.path.rglob("*") if p.is_file()]:
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        if self.directory and self.dest.exists():
            old = self.dest.parent / f".{self.dest.name}.{os.getpid()}.old{constants.PARTIAL_SUFFIX}"
            os.replace(self.dest, old)
            os.replace(self.path, self.dest)
            _remove(old)
        else:
            os.replace(self.path, self.dest)

    def discard(self) -> None:
        _remove(self.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class _Writer:
    """Parquet writers for the output, used from one background thread so writing overlaps the next chunk."""

    def __init__(self, partial: _Partial, to_directory: bool, finish: Callable[[Part | None], dict]):
        self._partial, self._to_directory, self._finish = partial, to_directory, finish
        self._schema = None  # the open file's
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmframe-write")
        self._writer = None
        self._part: Part | None = None
        self._pending: Future | None = None

    def write(self, part: Part, table) -> None:
        """Queue a chunk's table; waits for the previous write first, so at most one is outstanding."""
        self._wait()
        self._pending = self._pool.submit(self._write, part, table)

    def _write(self, part: Part, table) -> None:
        import pyarrow.parquet as pq

        if self._writer is not None and self._to_directory and part is not self._part:
            self._close()
        if self._writer is None:
            path = self._partial.path
            if self._to_directory:
                path = path / Path(part.name).with_suffix(".parquet")
                path.parent.mkdir(parents=True, exist_ok=True)
            self._schema = table.schema
            self._writer = pq.ParquetWriter(path, self._schema)
        self._part = part
        self._writer.write_table(table, row_group_size=table.num_rows or None)

    def _close(self) -> None:
        # The footer's Arrow schema is written when the file is opened, before the report exists:
        # both it and the llmframe key are set again now, so readers of either see the provenance.
        record = json.dumps(self._finish(self._part if self._to_directory else None), ensure_ascii=False)
        schema = self._schema.with_metadata({**(self._schema.metadata or {}), constants.PROVENANCE_KEY.encode(): record.encode()})
        self._writer.add_key_value_metadata({
            "ARROW:schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
            constants.PROVENANCE_KEY: record,
        })
        self._writer.close()
        self._writer = None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """Finish the last file, once the last write is done."""
        self._wait()
        if self._writer is not None:
            self._close()
        self._pool.shutdown(wait=True)

    def abandon(self) -> None:
        try:
            self._wait()
        except Exception:
            pass
        self._pool.shutdown(wait=True)
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass


def _prefetched(chunks: Iterator[Any]) -> Iterator[Any]:
    """The same items, read one ahead on a thread (pyarrow decodes without the GIL), so reading overlaps the run."""
    slot: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    end = object()

    def read() -> None:
        try:
            for item in chunks:
                while not stop.is_set():
                    try:
                        slot.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slot.put((end, None))
        except BaseException as exc:  # handed to the consumer, raised there
            slot.put((end, exc))

    reader = threading.Thread(target=read, name="llmframe-read", daemon=True)
    reader.start()
    try:
        while True:
            item, exc = slot.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()


@dataclass
class Outcome:
    """What a run did: its merged report, and whether rows failed where the user asked to raise."""

    report: dict
    failed_raise: int = 0
    first_error: str | None = None


def run(job: Job) -> Outcome:
    """Stream the input through generate into the output; nothing is written until the input is checked."""
    import pyarrow as pa

    from ..faces import pandas as accessor  # noqa: F401  (registers df.llm)
    from ..plan.template import Template

    parts = open_source(job.source)
    to_directory = check_destination(job, parts)
    schema = parts[0].schema
    generate = dict(model=job.model, output=job.output, errors=job.errors, **job.options)
    # Every argument checked, and the new columns typed, by generate itself on no rows: before any file exists.
    empty = generate_chunk(schema.empty_table(), list(schema.names), job.template, generate)
    new = NewColumns(empty, schema)
    used = Template(job.template, schema.names, system=job.options.get("system")).columns
    out_schemas = {id(p): output_schema(schema, new) for p in parts}  # one file: the schemas are the same
    if to_directory:  # each file keeps its own columns: check the template and the new names against each
        for part in parts:
            if not part.schema.equals(schema):
                refuse_index_clash(generate_chunk(part.schema.empty_table(), list(part.schema.names), job.template,
                                                  generate), part.schema)
                out_schemas[id(part)] = output_schema(part.schema, new)
    secrets = _secrets(job)
    reports: list[dict] = []
    part_reports: dict[int, list[dict]] = {}
    started = time.perf_counter()

    def finish(part: Part | None) -> dict:
        mine = part_reports.get(id(part), []) if part is not None else reports
        report = provenance.merge_reports(mine) or {"rows": 0}
        if part is None:
            report["seconds"] = round(time.perf_counter() - started, 3)
        return provenance.record(
            source=str(part.path if part is not None else job.source), template=job.template, model=job.model,
            output=job.output, output_source=job.output_source, errors=job.errors, options=job.options,
            columns=new.schema.names, report=report, secrets=secrets,
        )

    partial = _Partial(job.dest, to_directory)
    partial.open()
    writer = _Writer(partial, to_directory, finish)
    total = sum(p.rows for p in parts) if all(p.rows is not None for p in parts) else None
    show = not job.quiet and should_show(job.progress)
    bar = Progress(total, show=show, description=job.model)  # type: ignore[arg-type]
    outcome = Outcome({})
    cap, spent = job.options.get("max_cost"), 0.0
    state = "done"  # the bar's final state: complete (perhaps with failed rows), interrupted or stopped
    try:
        with shared(bar), one_warning_for_all_runs():  # one warning for the whole input, below, not one per chunk
            chunks = ((part, table) for part in parts for table in part.tables(job.batch_rows))
            for part, table in _prefetched(chunks):
                if cap is not None:  # max_cost is the whole run's: each chunk may spend what is left
                    if cap - spent <= 0:
                        raise BudgetExceeded(f"max_cost={cap} reached (spent about ${spent:.4g}) before the "
                                             f"input's end; raise --max-cost and re-run to send the rest")
                    generate["max_cost"] = cap - spent
                try:
                    out = generate_chunk(table, used, job.template, generate)
                    report = out.attrs[constants.REPORT_ATTR]
                except RunAborted as exc:
                    if exc.report is None:  # the breaker or a refused key: every later row would fail too
                        raise
                    report = exc.report  # errors="raise": keep going, so the cache fills; no output at the end
                    outcome.failed_raise += report["failed"]
                    outcome.first_error = outcome.first_error or (report["errors"] or [None])[0]
                spent += (report.get("budget") or {}).get("spent") or 0.0
                reports.append(report)
                part_reports.setdefault(id(part), []).append(report)
                if not outcome.failed_raise:
                    columns = new.arrow(out)
                    writer.write(part, pa.Table.from_arrays([*table.columns, *columns.columns],
                                                            schema=out_schemas[id(part)]))
        outcome.report = provenance.merge_reports(reports) or {"rows": 0}
        outcome.report["seconds"] = round(time.perf_counter() - started, 3)
        if outcome.failed_raise:
            writer.abandon()
            partial.discard()
            return outcome
        writer.close()
        partial.commit()
        warn_if_mostly_failed(outcome.report)
        return outcome
    except BaseException as exc:
        state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped"
        writer.abandon()
        partial.discard()
        raise
    finally:
        bar.close(state)


def generate_chunk(table, used: list[str], template: Any, generate: dict) -> pd.DataFrame:
    """df.llm.generate on a chunk: only the columns the template reads are converted to pandas."""
    frame = table.select(used).to_pandas() if used else pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    return frame.llm.generate(template, **generate)


def _secrets(job: Job) -> list[str | None]:
    """The key values to scrub from provenance: the one given, and the provider's environment variables."""
    from ..providers import parse_model, provider_class

    env = provider_class(parse_model(job.model)[0]).key_env
    return [job.options.get("api_key"), *(os.environ.get(v) for v in env)]


def summary(job: Job, outcome: Outcome) -> str:
    """The one line printed when a run ends."""
    r = outcome.report
    counts = (f"{r.get('rows', 0):,} rows: {r.get('requests_sent', 0):,} sent, {r.get('cached', 0):,} cached, "
              f"{r.get('failed', 0):,} failed, {r.get('skipped', 0):,} skipped; "
              f"{r.get('input_tokens', 0) + r.get('output_tokens', 0):,} tokens; "
              + (f"${r['cost']:.4g}; " if isinstance(r.get("cost"), (int, float)) else "")
              + f"{r.get('seconds', 0):.1f} s")
    if outcome.failed_raise:
        return (f"llmframe run: {outcome.failed_raise:,} rows failed with --errors raise (first error: "
                f"{outcome.first_error}); nothing written to {job.dest}. The answers that succeeded are cached: "
                f"a re-run sends only the failed rows ({counts})")
    return f"llmframe run: wrote {job.dest} ({counts})"


def print_summary(job: Job, outcome: Outcome) -> None:
    if not job.quiet or outcome.failed_raise:
        print(summary(job, outcome), file=sys.stderr, flush=True)
