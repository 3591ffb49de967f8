"""`llmframe run`'s input: a Parquet file or dataset (or CSV / JSON Lines), as Arrow tables of a fixed row count."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import constants
from ..errors import ConfigError

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
_FORMATS = {**dict.fromkeys(PARQUET_SUFFIXES, "parquet"), ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl",
            ".ndjson": "jsonl"}


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


def prefetched(chunks: Iterator[Any]) -> Iterator[Any]:
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
