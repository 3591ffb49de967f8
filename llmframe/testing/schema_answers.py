"""Deterministic instances of JSON Schemas, for the simulator's structured-output answers.

instance(schema, seed) builds a value that conforms to a JSON Schema: the draft 2020-12 subset that
pydantic v2's model_json_schema() and the openai SDK's strict conversion produce. Every choice (an
enum member, an anyOf branch, a number, a string's hex digits, an array's length) comes from a hash
of the seed and the value's JSON path, so a seed always gets the same value and different seeds
usually get different ones.

violation(schema, seed) builds valid JSON that breaks the schema (a required property missing, a
value of the wrong type, or a value outside an enum), and invalid_json(text, seed) breaks a JSON
text (prose or a code fence around it, or cut short), for the simulator's faults.
"""

from __future__ import annotations

import json
from typing import Any

from .schema_generator import ALL_TYPES, Generator
from .schema_scalars import Unsatisfiable, hash_of, hex_of

__all__ = ["instance", "violation", "invalid_json"]


def instance(schema: dict | bool, seed: str) -> Any:
    """Return a JSON value (dicts, lists, str, int, float, bool, None) conforming to schema, chosen by seed.

    Local $refs (#/$defs/..., #/definitions/..., #) are followed. A pattern is honoured when its regular
    expression is simple enough to generate a match for (literals, classes, repeats, groups,
    alternatives); otherwise, as a last resort, it is ignored. Raises ValueError for a schema whose
    instances would nest without end, and TypeError for one that is not a dict or bool.
    """
    try:
        return Generator(schema, seed, lenient=False).value(schema, "$", 0)
    except Unsatisfiable:
        # Ignore what cannot be met (an unsupported pattern, contradictory bounds) rather than fail.
        return Generator(schema, seed, lenient=True).value(schema, "$", 0)


_NOTHING = object()


def violation(schema: dict | bool, seed: str, value: Any = _NOTHING) -> Any:
    """Return valid JSON that does not conform to schema: value (default: instance(schema, seed)) spoiled.

    For an object schema, one of: a required property left out (one without a default, that is not
    nullable, where there is one), a property of the wrong type, or a property outside its enum.
    Otherwise the whole value is replaced by one of a type the schema does not allow. Raises ValueError
    where no JSON value violates the schema (as for {}).
    """
    gen = Generator(schema, seed, lenient=True)
    if value is _NOTHING:
        value = instance(schema, seed)
    root = gen.effective(schema)
    if isinstance(value, dict) and isinstance(root, dict) and "object" in gen.types(root):
        props = root.get("properties") if isinstance(root.get("properties"), dict) else {}
        required = [r for r in root.get("required", ()) if isinstance(r, str) and r in value]
        # Leaving out a property with a default, or a nullable one, breaks the schema but not pydantic.
        droppable = [r for r in required if not _lenient_property(gen, props.get(r, {}))]
        retypable = [k for k in value if k in props and gen.types(props[k]) != ALL_TYPES]
        outside = [k for k in value if k in props and gen.enum_values(props[k]) is not None]
        found = (("missing", droppable), ("type", retypable), ("enum", outside))
        modes = [(name, keys) for name, keys in found if keys]
        if not modes and required:
            modes = [("missing", required)]
        if modes:
            mode, keys = modes[hash_of(seed, "$", "violation") % len(modes)]
            key = keys[hash_of(seed, "$", "violation-key") % len(keys)]
            spoiled = dict(value)
            if mode == "missing":
                del spoiled[key]
            elif mode == "type":
                spoiled[key] = _wrong_type(gen.types(props[key]), seed)
            else:
                spoiled[key] = _outside(gen.enum_values(props[key]), seed)
            return spoiled
    allowed = gen.types(schema)
    if allowed != ALL_TYPES:
        return _wrong_type(allowed, seed)
    members = gen.enum_values(schema)
    if members is not None:
        return _outside(members, seed)
    raise ValueError("every JSON value conforms to this schema")


def invalid_json(text: str, seed: str) -> str:
    """Return text spoiled so that json.loads fails: wrapped in prose or a code fence, or cut short."""
    variants = [
        f"Sure! Here it is: {text}",
        f"```json\n{text}\n```",
        text[: len(text) // 2],
        f"{text}\n\nLet me know if you need anything else!",
    ]
    spoiled = variants[hash_of(seed, "$", "invalid-json") % len(variants)]
    try:
        json.loads(spoiled)
    except ValueError:
        return spoiled
    return variants[0]  # a cut that still parses, as a number cut in half can


# --- violations ---------------------------------------------------------------


def _lenient_property(gen: Generator, schema: Any) -> bool:
    """Whether leaving a property out may still pass a pydantic model: it has a default, or allows null."""
    raw = schema if isinstance(schema, dict) else {}
    return "default" in raw or "null" in gen.types(schema)


def _wrong_type(allowed: frozenset[str], seed: str) -> Any:
    """A value of a type the schema does not allow, of a kind pydantic does not coerce either."""
    candidates = {
        "string": f"not-valid-{hex_of(seed, '$', 'wrong', 6)}",  # not numeric, not a bool word
        "object": {"unexpected": f"text-{hex_of(seed, '$', 'wrong', 8)}"},
        "array": [f"text-{hex_of(seed, '$', 'wrong', 8)}"],
        "number": 0.5,
        "boolean": True,
        "null": None,
    }
    for kind, value in candidates.items():
        if kind not in allowed:
            return value
    raise ValueError("every JSON type conforms to this schema")


def _outside(members: list, seed: str) -> Any:
    """A value that is not one of members."""
    for attempt in range(8):
        candidate = f"not-in-enum-{hex_of(seed, '$', f'enum{attempt}', 6)}"
        if candidate not in members:
            return candidate
    raise ValueError("no value outside the enum found")  # pragma: no cover
