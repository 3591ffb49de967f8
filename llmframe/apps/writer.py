"""`llmframe run`'s output: the new columns' fixed Arrow types, and Parquet files written beside the
destination and moved into place only once complete."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from .. import constants
from ..errors import ConfigError
from .reader import Part


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


class Partial:
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


class Writer:
    """Parquet writers for the output, used from one background thread so writing overlaps the next chunk."""

    def __init__(self, partial: Partial, to_directory: bool, finish: Callable[[Part | None], dict]):
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
