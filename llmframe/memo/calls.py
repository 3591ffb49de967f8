"""The run memo's entry points: plan a generate call with what the memo holds, and say why a call is not cached."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .. import __version__, constants
from ..plan import build
from ..plan.request import canonical_json
from ..plan.rows import Rows
from ..plan.template import TemplateLike
from ..plan.target import Target
from . import files, fingerprint
from .part import Part, SubRows, differences


def plan(rows: Rows, template: TemplateLike, *, target: Target, **options: Any) -> build.Plan:
    """build.plan for generate, with the chunks the memo holds answered from it: only the other rows are planned."""
    started = time.perf_counter()
    settled = build.head(rows, template, target=target, **options)
    call = _call(rows, settled, options)
    if call is None:
        return build.planned(rows, settled)
    memo_dir, identity, salt, description, arrays = call
    stored = files.load_all(memo_dir, identity)
    fps = [fp.hex() for fp in fingerprint.chunks(arrays, len(rows), constants.MEMO_CHUNK_ROWS, salt)]
    hits: dict[int, tuple[int, int]] = {}
    if settled.checked["cache"] is True:  # "refresh" asks anew, writes anew
        index: dict[str, tuple[int, int]] = {}
        for n in reversed(range(len(stored))):  # the most recently used memo wins a fingerprint two hold
            if stored[n].meta.get("chunk_rows") == constants.MEMO_CHUNK_ROWS:
                index.update((fp, (n, k)) for fp, k in stored[n].index().items())
        hits = {i: index[fp] for i, fp in enumerate(fps) if fp in index}
    part = Part(memo_dir, identity, stored, fps, hits, len(rows), description,
                stored[0].epoch if stored else files.epoch(memo_dir), started)
    sub = rows if not hits else SubRows(rows, part.missed_positions())
    return build.planned(sub, settled, part)


def why_not_cached(rows: Rows, template: TemplateLike, *, target: Target, **options: Any) -> list[str] | None:
    """What differs from the last run of this call in this cache (for estimate); None where there is no memo."""
    settled = build.head(rows, template, target=target, **options)
    call = _call(rows, settled, options)
    if call is None:
        return None
    memo_dir, identity, salt, description, arrays = call
    stored = files.load_all(memo_dir, identity)
    if not stored:
        return [constants.MEMO_NO_EARLIER_RUN]
    fps = [fp.hex() for fp in fingerprint.chunks(arrays, len(rows), constants.MEMO_CHUNK_ROWS, salt)]
    return differences(stored, description, fps, len(rows))


def _call(rows: Rows, settled: build.Head, options: dict) -> tuple | None:
    """(memo directory, call identity, plan salt, plan description, input columns) of a call the memo can
    answer; None for one it cannot: see README "Run memo" for which."""
    checked = settled.checked
    cache = checked["cache"]
    if (cache is not True and cache != "refresh") or os.environ.get(constants.MEMO_ENV_VAR) == "0":
        return None
    if checked["mode"] != "online" or checked["usage"] or checked["prices"] is not None \
            or checked["max_cost"] is not None or constants.EMBEDDING_KEY in settled.gen:
        return None  # batch jobs keep their own state; costs are priced per run
    if any(checked.get(name) is not None for name in ("on_row", "on_progress", "on_done")):
        return None  # callbacks see every row as the run answers it
    if settled.tools is not None or checked["rows_per_request"] > 1:
        return None  # tool transcripts and packed requests: the per-row path (not measured with the memo yet)
    if settled.compiled.function is not None or not hasattr(rows, "arrow"):
        return None  # a function's code cannot be fingerprinted
    if settled.compiled.media is not None:
        return None  # a path's file can change under the same cell value: media keys hash the bytes, per row
    from ..config import settings
    from ..stores.manage import locate

    where = locate(checked["cache_dir"] or settings().cache_dir)
    if not isinstance(where, Path):
        return None  # a shared PostgreSQL store: see memo/files.py
    arrays = []
    for column in settled.compiled.columns:
        found = rows.arrow(column)
        if found is None:
            return None
        arrays.append(fingerprint.chunked(found))
    out = settled.out
    description = {
        "template": canonical_json([[role, text.source] for role, text in settled.compiled.parts]),
        "model": settled.target.name,
        "endpoint": settled.endpoint,
        "parameters": canonical_json(settled.gen),
        "schema": canonical_json(out.schema.key_material()) if out.schema is not None else None,
        "reading": canonical_json({k: checked[k] for k in ("missing", "allow_no_placeholder", "max_prompt_tokens",
                                                         "strict", "structured", "output_mode", "prefix", "errors")}),
        "columns": canonical_json([str(c) for c in settled.compiled.columns]),
    }
    salt = fingerprint.call_digest(__version__, fingerprint.HASH, settled.head,
                                   *(v or "" for v in description.values()),
                                   canonical_json(list(out.names)))
    identity = fingerprint.call_digest(type(rows).__name__, canonical_json(list(out.names)),
                                       canonical_json([str(c) for c in rows.columns])).hex()
    return files.directory(where), identity, salt, description, arrays
