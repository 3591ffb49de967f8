"""Provenance of a file `llmframe run` wrote: what made it (template, model, parameters, schema, report), never a key."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import constants
from ..errors import ConfigError, redact

# Options recorded as given; the rest of generate's keywords are recorded too, less these secrets.
_SECRET_OPTIONS = frozenset({"api_key"})
_SHORTEST_KEY = 8


def record(*, source: str, template: Any, model: str, output: Any, output_source: str | None, errors: str,
           options: dict, columns: list[str], report: dict, secrets: Iterable[str | None]) -> dict:
    """The provenance of one output file, as plain JSON, with every secret removed."""
    from .. import __version__
    from ..plan.structured import from_output

    schema = from_output(output)
    parameters = {k: v for k, v in options.items() if k not in _SECRET_OPTIONS}
    if isinstance(parameters.get("provider_options"), dict):  # SDK settings may carry credentials (headers)
        parameters["provider_options"] = {k: "***" for k in parameters["provider_options"]}
    if parameters.get("tools"):  # functions, by the name --tool takes (a repr would carry a memory address)
        parameters["tools"] = [f"{getattr(f, '__module__', '?')}:{getattr(f, '__qualname__', repr(f))}"
                               for f in parameters["tools"]]
    data = {
        "llmframe_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": source,
        "template": template,
        "model": model,
        "parameters": parameters,
        "errors": errors,
        "output": {
            "columns": columns,
            **({"schema_name": schema.name, "schema_source": output_source, "json_schema": schema.json_schema}
               if schema is not None else {"text_column": output}),
        },
        "report": report,
    }
    text = json.dumps(data, ensure_ascii=False, default=str)
    # A string this short is no real key, and scrubbing it would mangle ordinary words (a test key "sim").
    return json.loads(redact(text, *(s for s in secrets if s and len(s) >= _SHORTEST_KEY)))


def merge_reports(reports: Iterable[dict]) -> dict:
    """One report for many runs (the chunks of a file): counts add up, error samples are pooled.

    Generic over the keys, so counters a later version adds to the report (cost, say) add up too.
    """
    merged: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if key == "run_id":
                continue
            old = merged.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float, dict, list)):
                if key not in merged:
                    merged[key] = value
                elif value not in (old if isinstance(old, list) else [old]):  # one batch job per chunk, say
                    merged[key] = [*(old if isinstance(old, list) else [old]), value]
            elif isinstance(value, (int, float)):
                merged[key] = (old or 0) + value
            elif isinstance(value, dict):
                merged[key] = {**(old or {})}
                for k, v in value.items():
                    merged[key][k] = merged[key].get(k, 0) + v if isinstance(v, (int, float)) else v
            else:
                merged[key] = list(dict.fromkeys([*(old or []), *value]))[: constants.ERROR_SAMPLES]
    if "seconds" in merged:
        merged["seconds"] = round(merged["seconds"], 3)
    return merged


def read(path: str | os.PathLike) -> list[tuple[str, dict | None, int]]:
    """(file, provenance or None, rows) for a Parquet file, or for each Parquet file of a directory."""
    import pyarrow.parquet as pq

    root = Path(path)
    if not root.exists():
        raise ConfigError(f"{root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".parquet", ".parq", ".pq")) \
        if root.is_dir() else [root]
    found = []
    for file in files:
        try:
            meta = pq.ParquetFile(file).metadata
        except Exception as exc:
            raise ConfigError(f"{file} is not a readable Parquet file: {exc}") from None
        raw = (meta.metadata or {}).get(constants.PROVENANCE_KEY.encode())
        found.append((str(file), json.loads(raw) if raw else None, meta.num_rows))
    return found


def describe(path: str | os.PathLike) -> str:
    """What `llmframe info FILE` prints: the provenance, readably."""
    files = read(path)
    made = [(f, p, n) for f, p, n in files if p is not None]
    if not made:
        return f"{path}: {sum(n for _, _, n in files):,} rows; not written by `llmframe run` (no provenance)"
    first = made[0][1]
    report = merge_reports(p["report"] for _, p, _ in made) if len(made) > 1 else first["report"]
    lines = [f"{path}: {sum(n for _, _, n in files):,} rows" + (f" in {len(files)} files" if len(files) > 1 else "")]
    template = first["template"]
    fields = [
        ("written by", f"llmframe {first['llmframe_version']} at {first['created']}"),
        ("input", first["input"]),
        ("model", first["model"]),
        ("template", template if isinstance(template, str) else json.dumps(template, ensure_ascii=False)),
        ("parameters", ", ".join(f"{k}={v!r}" for k, v in first["parameters"].items()) or "(defaults)"),
        ("errors", first["errors"]),
        ("new columns", ", ".join(first["output"]["columns"])),
    ]
    if "schema_name" in first["output"]:
        fields.append(("schema", f"{first['output']['schema_name']}"
                       + (f" (from {first['output']['schema_source']})" if first["output"].get("schema_source") else "")))
    lines += [f"  {name:<12} {_indent(str(value))}" for name, value in fields]
    lines.append("  report")
    width = max(map(len, report), default=0)  # a longer key added later keeps the column straight
    lines += [f"    {key:<{width}} {value}" for key, value in report.items()]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return text.replace("\n", "\n" + " " * 15)
