"""What the memo answered of one call, and how the collector puts it together with the rows that were run."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .. import constants
from . import files


class SubRows:
    """The rows at some positions of another Rows (plan.rows.Rows): the rows the memo did not answer."""

    def __init__(self, rows: Any, positions: np.ndarray):
        self.base, self.positions = rows, positions
        self.columns, self.index_names, self.nulls = rows.columns, rows.index_names, rows.nulls

    def __len__(self) -> int:
        return len(self.positions)

    def values(self, column: Any, positions: np.ndarray | None = None) -> list:
        return self.base.values(column, self.positions if positions is None else self.positions[positions])

    def missing(self, column: Any) -> np.ndarray:
        if not len(self.positions):  # the memo answered every row: nothing to look at
            return np.zeros(0, dtype=bool)
        return self.base.missing(column)[self.positions]

    def holds_objects(self, column: Any) -> bool:
        return self.base.holds_objects(column)

    def records(self) -> Iterator[tuple]:
        wanted = set(self.positions.tolist())
        return (r for i, r in enumerate(self.base.records()) if i in wanted)

    def label(self, position: int) -> Any:
        return self.base.label(int(self.positions[position]))

    def unusable(self, column: Any) -> str | None:
        return self.base.unusable(column)


class Part:
    """The memo's share of a call: which chunks it answers (chunk -> (which of the call's memos, its chunk)), and
    what to write."""

    def __init__(self, memo_dir: Path, call: str, stored: list[files.Stored], fps: list[str],
                 hits: dict[int, tuple[int, int]], rows: int, description: dict, epoch: str | None, started: float):
        self.memo_dir, self.call, self.stored, self.fps, self.hits = memo_dir, call, stored, fps, hits
        self.rows, self.description, self.epoch, self.started = rows, description, epoch, started
        self.size = constants.MEMO_CHUNK_ROWS
        self.why = differences(stored, description, fps, rows) if stored else [constants.MEMO_NO_EARLIER_RUN]

    def __repr__(self) -> str:
        return f"memo.Part({len(self.hits)} of {len(self.fps)} chunks from the memo)"

    @property
    def answered(self) -> int:
        """Rows the memo answers."""
        return sum(self.span(i)[1] - self.span(i)[0] for i in self.hits)

    def span(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.size
        return start, min(start + self.size, self.rows)

    def missed_positions(self) -> np.ndarray:
        """The rows of the chunks the memo does not answer, in order: the plan's rows."""
        spans = [np.arange(*self.span(i)) for i in range(len(self.fps)) if i not in self.hits]
        return np.concatenate(spans) if spans else np.zeros(0, dtype=np.int64)

    def stitch(self, run: Any, outcome: Any, columns: dict, report: dict) -> tuple[dict, dict]:
        """The call's columns and report: the memo's chunks and the run's rows, in row order; then the new memo."""
        new = report["rows"] - report["cached"] - report["skipped"]  # rows the per-row cache did not hold either
        memo_rows = self.answered
        full = columns
        if self.hits:
            full = self._columns(columns)
            metas = [self.stored[n].meta for n, _ in self.hits.values()]
            skipped = sum(meta["skipped"][k] for meta, (_, k) in zip(metas, self.hits.values()))
            report["rows"] += memo_rows
            report["cached"] += memo_rows - skipped
            report["skipped"] += skipped
            finish = dict(report.get("finish_reasons", {}))
            for meta, (_, k) in zip(metas, self.hits.values()):
                for reason, n in meta["finish"][k].items():
                    finish[reason] = finish.get(reason, 0) + n
            report["finish_reasons"] = finish
            report["seconds"] = round(report["seconds"] + time.perf_counter() - self.started, 3)
        report["memo_rows"] = memo_rows
        why = [w for w in self.why if not w.startswith("rows:")]
        if new and self.stored and not why:
            why.append(f"rows: {new} new or changed rows")
        if memo_rows < self.rows and why:
            report["not_cached_because"] = why
        # Not where answers failed to reach the cache: the memo must never be the only copy of an answer.
        if not outcome.pending_note and not outcome.counters.not_cached and run.cache in (True, "refresh"):
            self._save(run, outcome, full)
        return full, report

    def _columns(self, columns: dict) -> dict:
        """Each column as the memo's chunks and the run's rows, in row order (Arrow slices: nothing copied)."""
        out = {}
        for name, values in columns.items():
            pieces, at = [], 0
            for i in range(len(self.fps)):
                start, stop = self.span(i)
                if i in self.hits:
                    n, k = self.hits[i]
                    pieces.append(self.stored[n].table.column(name).slice(k * self.size, stop - start))
                else:
                    pieces.append(values[at: at + stop - start])
                    at += stop - start
            out[name] = _joined(pieces)
        return out

    def _save(self, run: Any, outcome: Any, full: dict) -> None:
        """Write the call's memo: every chunk whose rows all have their answer (so are in the per-row cache)."""
        if not all(isinstance(v, (pa.Array, pa.ChunkedArray)) for v in full.values()):
            return  # Python objects (validated models): the per-row path answers such calls
        answers, keys = outcome.answers, run.row_to_key
        bad = answers.failed()
        row_bad = np.zeros(len(keys), dtype=bool)
        row_bad[keys >= 0] = bad[keys[keys >= 0]]
        skipped = np.zeros(len(keys), dtype=bool)
        if run.prompts.skipped:
            skipped[list(run.prompts.skipped)] = True
        names = answers.finish_names
        chunks, skips, finish, at = [], [], [], 0
        for i, fp in enumerate(self.fps):
            start, stop = self.span(i)
            if i in self.hits:
                n, k = self.hits[i]
                meta = self.stored[n].meta
                chunks.append(fp)
                skips.append(meta["skipped"][k])
                finish.append(meta["finish"][k])
                continue
            rows = slice(at, at + stop - start)
            at += stop - start
            ok = not row_bad[rows].any()
            chunks.append(fp if ok else None)
            skips.append(int(skipped[rows].sum()))
            answered = keys[rows][(keys[rows] >= 0)]
            codes = np.bincount(answers.finish[answered], minlength=len(names))
            finish.append({constants.NO_FINISH_REASON if n is None else str(n): int(c)
                           for n, c in zip(names, codes.tolist()) if c})
        used = collections.Counter(n for n, _ in self.hits.values())
        for n in used:
            files.touch(self.stored[n])  # the least recently used go first when the memo is over its bound
        whole = len(used) == 1 and len(self.hits) == len(self.fps)
        if whole and self.stored[next(iter(used))].meta["chunks"] == chunks:
            return  # all from one memo, as it is
        if not any(chunks):
            return
        # The memo most of the hits came from is replaced (a notebook's frame with an edited row); with none, a
        # memo of its own, named by its first chunk (each chunk of a streamed file, each frame with these columns).
        tag = self.stored[used.most_common(1)[0][0]].tag if used else self.fps[0][:16]
        table = pa.table(full)
        files.save(self.memo_dir, self.call, table, {"chunks": chunks, "skipped": skips, "finish": finish,
                                                    "description": self.description, "rows": self.rows,
                                                    "chunk_rows": self.size,
                                                    "saved": time.time()},
                   self.epoch if self.hits else None, tag)  # without hits, every chunk is this run's own answers


def _joined(pieces: list) -> pa.ChunkedArray | np.ndarray:
    """Arrow pieces as one chunked array; numpy pieces (Python objects) as one object array."""
    if any(isinstance(p, np.ndarray) for p in pieces):
        return np.concatenate([p if isinstance(p, np.ndarray) else np.asarray(p.to_pylist(), dtype=object)
                               for p in pieces])
    kind = next((p.type for p in pieces if len(p)), pieces[0].type)
    chunks = []
    for p in pieces:
        parts = p.chunks if isinstance(p, pa.ChunkedArray) else [p]
        chunks.extend(c if c.type == kind else c.cast(kind) for c in parts if len(c))
    return pa.chunked_array(chunks, type=kind)


def differences(stored: list[files.Stored], description: dict, fps: list[str], rows: int) -> list[str]:
    """What differs between this call and the memo's last run of it (stored: the call's memos, the most recently
    used first): the plan's parts, then the rows not in any of them."""
    before = stored[0].meta.get("description", {})
    named = {"template": "template changed", "endpoint": "endpoint changed", "parameters": "parameters changed",
             "schema": "schema changed", "reading": "output options changed",
             "columns": "the template reads other columns"}
    out = []
    if before.get("model") != description.get("model"):
        out.append(f"model changed ({before.get('model')} -> {description.get('model')})")
    out += [text for part, text in named.items() if before.get(part) != description.get(part)]
    size = constants.MEMO_CHUNK_ROWS
    if not out and stored[0].meta.get("chunk_rows") != size:
        out.append(f"the memo was written with chunks of {stored[0].meta.get('chunk_rows')} rows, not {size}")
    if not out:
        held = set(c for s in stored if s.meta.get("chunk_rows") == size for c in s.meta["chunks"] if c is not None)
        missing = [i for i, fp in enumerate(fps) if fp not in held]
        if missing:
            changed = sum(min(size, rows - i * size) for i in missing)
            out.append(f"rows: up to {changed} new or changed rows (in {len(missing)} of {len(fps)} chunks "
                       f"of {size})")
    return out
