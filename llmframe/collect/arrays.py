"""Column values as Arrow arrays, the collector's output, which each face converts to its own frame's columns.

Arrow types stand for the column types: large_string (text), int64 / float64 / bool with nulls (nullable
numbers and flags), dictionary (categories), timestamp (date-times). Python objects (lists, dicts,
validated models) have no Arrow type: they stay a numpy object array.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pyarrow as pa

from ..plan import structured

if TYPE_CHECKING:
    from ..plan.output import Output

Column = Union[pa.Array, pa.ChunkedArray, np.ndarray]


def objects(values: Sequence[Any]) -> np.ndarray:
    """A numpy object array of the values as they are (np.array would unpack lists and tuples)."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    return np.fromiter(values, dtype=object, count=len(values))


def masked(values: np.ndarray, shown: np.ndarray | None = None) -> pa.Array:
    """Numbers or flags as an Arrow array, missing where not shown and where a float is NaN."""
    mask = None if shown is None else ~shown
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        mask = nan if mask is None else mask | nan
    return pa.array(values, mask=mask)


def strings(values: np.ndarray, shown: np.ndarray | None = None) -> pa.Array:
    """Texts (None where missing) as a large_string array, missing where not shown."""
    return pa.array(values, type=pa.large_string(), mask=None if shown is None else ~shown)


def fields(schema: structured.OutputSchema, values: Sequence[Any], prefix: str, mode: str) -> dict[str, Column]:
    """Typed columns for the parsed values of every row (None for rows without one)."""
    if mode == "object":
        return {f"{prefix}{schema.base}": objects(values)}
    plain = _dumped(values) if schema.model is not None else values
    return {f"{prefix}{field}": typed([None if row is None else structured.plain(row.get(field)) for row in plain],
                                      schema.kinds[field])
            for field in schema.fields}


def _dumped(values: Sequence[Any]) -> list:
    """Each validated model as a dict (None stays None); an instance shared by many rows (the checker's, for a
    repeated answer) is dumped once where its fields are scalars (a list or dict cell stays each row's own)."""
    done: dict[int, dict] = {}
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        got = done.get(id(v))
        if got is None:
            got = v.model_dump(mode="python")
            if all(isinstance(c, _IMMUTABLE) for c in got.values()):
                done[id(v)] = got
        out.append(got)
    return out


_IMMUTABLE = (str, int, float, type(None), enum.Enum)


def typed(cells: list, kind: Any) -> Column:
    """A column of the field's kind; missing rows are null (or None among objects)."""
    if isinstance(kind, tuple):
        categories = list(dict.fromkeys(c for c in kind if c is not None))
        # One kind of scalar (Arrow's dictionary type needs one): strings, or numbers such as Literal[1, 2, 3].
        if categories and any(all(isinstance(c, t) and not isinstance(c, bool) for c in categories)
                              for t in (str, int, float)):
            return _categories(cells, categories)
        kind = structured.OBJECT
    if kind == structured.DATETIME:
        instants = [None if c is None else structured.instant(c) for c in cells]
        aware = any(c is not None and c.tzinfo is not None for c in instants)  # then all in UTC, naive ones as UTC
        return pa.array(instants, type=pa.timestamp("us", tz="UTC" if aware else None))
    if kind == structured.STR:
        return pa.array(cells, type=pa.large_string())
    if kind in _NUMBERS:
        shown = np.fromiter((c is not None for c in cells), dtype=bool, count=len(cells))
        return masked(np.array([c if c is not None else 0 for c in cells], dtype=_NUMBERS[kind]), shown)
    return objects(cells)


_NUMBERS = {structured.INT: np.int64, structured.FLOAT: np.float64, structured.BOOL: np.bool_}


def _categories(cells: list, categories: list) -> pa.DictionaryArray:
    """A dictionary array: values outside the categories are missing, as in pandas.Categorical."""
    code = {c: i for i, c in enumerate(categories)}
    codes = np.fromiter((code.get(c, -1) for c in cells), dtype=np.int32, count=len(cells))
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), pa.array(categories))


def nested_type(schema: structured.OutputSchema, field: str) -> pa.DataType | None:
    """The Arrow type of an object-kind field (lists, nested models, maps) from its JSON Schema; None where the
    schema leaves it open (a union of kinds). pandas keeps such fields as Python objects; Polars builds them."""
    return _type_of(schema.json_schema["properties"][field], schema.json_schema)


def nested_types(out: Output) -> dict[str, pa.DataType | None]:
    """Output column -> the Arrow type of its object-kind field (columns output mode only)."""
    schema = out.schema
    if schema is None or out.mode == "object":
        return {}
    return {f"{out.prefix}{f}": nested_type(schema, f) for f, k in schema.kinds.items() if k == "object"}


def _type_of(prop: Any, root: dict) -> pa.DataType | None:
    if not isinstance(prop, dict):
        return None
    if "$ref" in prop:
        prop = root.get("$defs", root.get("definitions", {})).get(prop["$ref"].rsplit("/", 1)[-1], {})
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        return _type_of(branches[0], root)
    kind = prop.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if "enum" in prop:
        values = [v for v in prop["enum"] if v is not None]
        kind = "string" if values and all(isinstance(v, str) for v in values) else kind
    if kind == "array":
        item = _field_of("item", prop.get("items"), root)
        return None if item is None else pa.large_list(item)
    if kind == "object":
        if isinstance(prop.get("properties"), dict) and prop["properties"]:
            fields = [_field_of(name, p, root) for name, p in prop["properties"].items()]
            return None if any(f is None for f in fields) else pa.struct(fields)
        value = _type_of(prop.get("additionalProperties"), root)
        return None if value is None else pa.map_(pa.large_string(), value)
    if kind == "string" and prop.get("format") == "date-time":
        return pa.timestamp("us", tz="UTC")
    return _SCALARS.get(kind)


def _field_of(name: str, prop: Any, root: dict) -> pa.Field | None:
    """A nested field; one of a set of strings (an enum) carries them as ENUM_KEY metadata, for a face's own type."""
    kind = _type_of(prop, root)
    if kind is None:
        return None
    if isinstance(prop, dict) and "$ref" in prop:
        prop = root.get("$defs", root.get("definitions", {})).get(prop["$ref"].rsplit("/", 1)[-1], {})
    values = prop.get("enum") if isinstance(prop, dict) else None
    if kind == pa.large_string() and values:
        return pa.field(name, kind, metadata={ENUM_KEY: json.dumps([v for v in values if v is not None])})
    return pa.field(name, kind)


ENUM_KEY = b"llmframe.enum"  # field metadata: the JSON list of a nested enum's values

_SCALARS = {"string": pa.large_string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}
