"""Structured outputs: a pydantic model or JSON Schema in, validated answers out, a column kind per field."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

import orjson

from .. import constants
from ..errors import ConfigError, SchemaError



class OutputSchema:
    """What a structured answer must look like, how to check one, and the kinds of the columns it becomes."""

    def __init__(self, output: Any):
        from pydantic import BaseModel

        self.model: type[BaseModel] | None = None
        if isinstance(output, type) and issubclass(output, BaseModel):
            self.model = output
            self.name = output.__name__
            try:
                self.json_schema = output.model_json_schema()
            except Exception as exc:  # pydantic's own message names the field it cannot express
                raise SchemaError(f"{output.__name__} has no JSON Schema: {exc}") from None
            self.fields = list(output.model_fields)
        elif isinstance(output, dict):
            self.json_schema = output
            self.name = str(output.get("title") or "response")
            if output.get("type") != "object" or not isinstance(output.get("properties"), dict):
                raise SchemaError("a JSON Schema output must be an object schema with properties: "
                                  '{"type": "object", "properties": {...}}')
            self.fields = list(output["properties"])
            self._validator = _json_schema_validator(output)
        else:
            raise SchemaError(f"output must be a column name, a pydantic model class or a JSON Schema dict, "
                              f"got {type(output).__name__}")
        if not self.fields:
            raise SchemaError(f"{self.name} has no fields: it would give no columns")
        self.base = _snake(self.name)

    def key_material(self) -> dict:
        """What of the schema changes the answer, for the cache key (validators do not: they re-check cached answers)."""
        return {"name": self.name, "schema": self.json_schema}

    def prompt(self) -> str:
        """The schema as words for the prompt, for servers that take only JSON mode (structured="json_object")."""
        return constants.SCHEMA_PROMPT.format(schema=json.dumps(self.json_schema, ensure_ascii=False))

    def parse(self, text: str | None) -> tuple[Any, str | None]:
        """(value, None) for an answer that validates, else (None, why not); near-JSON is repaired first."""
        if not text:
            return None, "invalid answer: empty"
        if self.model is not None:
            try:  # parse and validate in one pass in pydantic's core: what a cached re-run does for every row
                return self.model.model_validate_json(text), None
            except Exception:
                pass  # near-JSON (a code fence, prose) or an invalid answer: repaired, or told why, below
        data, problem = _load_json(text)
        if problem:
            return None, f"invalid answer: {problem}"
        try:
            if self.model is not None:
                return self.model.model_validate(data), None
            self._validator.validate(data)
            return data, None
        except Exception as exc:
            return None, f"invalid answer: {_short(exc)}"

    def checker(self, mode: str) -> Callable[[str | None], tuple[Any, str | None]]:
        """parse, and with one column per field, also refuse a value its column cannot hold (an int beyond int64)."""
        if mode == "object":  # instances hold any value
            return self.parse
        # One check of each short text (filter's two, classify's few): a repeated text shares its validated value,
        # which columns are built from (and an on_row callback reads); object mode, whose values are the result
        # itself, never shares one.
        seen: dict[str, tuple[Any, str | None]] = {}

        def check(text: str | None) -> tuple[Any, str | None]:
            known = seen.get(text)  # type: ignore[arg-type]
            if known is not None:
                return known
            value, problem = self.parse(text)
            if problem is None and (unfit := self._unfit(value)):
                value, problem = None, f"invalid answer: {unfit}"
            if text is not None and len(text) <= constants.SEEN_ANSWER_CHARS and len(seen) < constants.SEEN_ANSWERS:
                seen[text] = (value, problem)
            return value, problem

        return check

    def _unfit(self, value: Any) -> str | None:
        """Why a validated value does not fit its typed columns, or None: JSON numbers are unbounded, int64 is not,
        and a JSON Schema's date-time is a string that may not be one."""
        for field, kind in self.kinds.items():
            if kind not in (INT, FLOAT, DATETIME):
                continue
            cell = getattr(value, field, None) if self.model is not None else value.get(field)
            if kind == DATETIME:
                if isinstance(cell, str) and instant(cell) is None:
                    return f"field {field!r}: {cell!r} is not an ISO 8601 date-time"
                continue
            if isinstance(cell, bool) or not isinstance(cell, (int, float)):
                continue
            if kind == INT and not _INT64_MIN <= cell <= _INT64_MAX:
                return f"field {field!r}: value {cell!r} out of range for int64 (declare it as float or str to keep such values)"
            if kind == FLOAT and isinstance(cell, int) and abs(cell) > sys.float_info.max:
                return f"field {field!r}: value out of range for float64 (declare it as str to keep such values)"
        return None

    @functools.cached_property
    def kinds(self) -> dict[str, Any]:
        """Field -> its column kind: a kind name below, or a tuple of categories."""
        return {field: self._field_kind(field) for field in self.fields}

    def column_names(self, prefix: str, mode: str) -> list[str]:
        """The output columns, error column last."""
        names = [f"{prefix}{self.base}"] if mode == "object" else [f"{prefix}{f}" for f in self.fields]
        return [*names, f"{prefix}{self.base}{constants.ERROR_SUFFIX}"]

    def _field_kind(self, field: str) -> Any:
        if self.model is not None:
            return _kind_of_annotation(self.model.model_fields[field].annotation)
        return _kind_of_schema(self.json_schema["properties"][field], self.json_schema)


def with_prompt(messages: list[dict], text: str) -> list[dict]:
    """The messages with text after the last user message's own (not a message of its own: some chat
    templates allow no second system message, nor two user turns in a row)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last is None:
        return [*messages, {"role": "user", "content": text.lstrip()}]
    content = messages[last]["content"]
    # Text and media parts: the schema is one more text part.
    content = content + text if isinstance(content, str) else [*content, {"type": "text", "text": text.lstrip()}]
    return [*messages[:last], {**messages[last], "content": content}, *messages[last + 1:]]


def structured_mode(structured: str, schema: OutputSchema | None) -> str:
    """structured= (one of constants.STRUCTURED_MODES: the options table checked it) only with a structured output.

    Checked here, not in the table: whether it applies depends on output=.
    """
    if schema is None and structured != constants.STRUCTURED_MODES[0]:
        raise ConfigError(f"structured={structured!r} applies to structured outputs: pass a pydantic model or a "
                          "JSON Schema dict as output=")
    return structured


def from_output(output: Any) -> OutputSchema | None:
    """The schema for output=, or None when output names a plain text column."""
    return None if isinstance(output, str) else OutputSchema(output)


def _load_json(text: str) -> tuple[Any, str | None]:
    try:
        return orjson.loads(text), None  # several times json's speed: a cached re-run parses every answer
    except orjson.JSONDecodeError:
        pass  # NaN, huge integers, surrogates: json's reading, as before
    try:
        return json.loads(text), None
    except ValueError as exc:
        strict_error = f"not JSON ({exc})"
    # Models wrap JSON in code fences or prose; a maintained repairer recovers those, not guesswork.
    import json_repair

    repaired = json_repair.loads(text)
    if isinstance(repaired, (dict, list)) and repaired:
        return repaired, None
    return None, strict_error


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= constants.VALIDATION_MESSAGE_CHARS else text[: constants.VALIDATION_MESSAGE_CHARS] + "..."


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace(" ", "_")


def _json_schema_validator(schema: dict):
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"invalid JSON Schema: {exc.message}") from None
    return cls(schema)


# Column kinds: what a field's values become (collect/arrays.py builds them; pandas' dtype names, as faces show them).
INT, FLOAT, BOOL, STR, DATETIME, OBJECT = "Int64", "Float64", "boolean", "string", "datetime", "object"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _kind_of_annotation(annotation: Any) -> Any:
    """The column kind of a field type: a dtype name, a tuple of categories, or object."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _kind_of_annotation(args[0]) if len(args) == 1 else OBJECT
    if origin is typing.Annotated:
        return _kind_of_annotation(args[0])
    if origin is typing.Literal:
        return tuple(plain(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return tuple(m.value for m in annotation)
        if issubclass(annotation, bool):
            return BOOL
        if issubclass(annotation, int):
            return INT
        if issubclass(annotation, float):
            return FLOAT
        if issubclass(annotation, str):
            return STR
        if issubclass(annotation, dt.datetime):
            return DATETIME
    return OBJECT


def _kind_of_schema(prop: dict, root: dict) -> Any:
    """The column kind of a JSON Schema property."""
    if not isinstance(prop, dict):  # true / false are valid schemas too
        return OBJECT
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        prop = root.get("$defs", root.get("definitions", {})).get(name, {})
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        return _kind_of_schema(branches[0], root)
    if "enum" in prop:
        return tuple(prop["enum"])
    kind = prop.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind == "string" and prop.get("format") == "date-time":
        return DATETIME
    return {"integer": INT, "number": FLOAT, "boolean": BOOL, "string": STR}.get(kind, OBJECT)


def plain(value: Any) -> Any:
    """An enum member as its value, which is what a column holds."""
    return value.value if isinstance(value, enum.Enum) else value


def instant(value: Any) -> dt.datetime | None:
    """A date-time field's value as a datetime: ISO 8601 text is parsed ("Z" too); None where it is not one."""
    if isinstance(value, dt.datetime) or value is None:
        return value
    if not isinstance(value, str):
        return None
    text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value  # Python 3.10's fromisoformat wants the offset
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None
