"""The walk of a JSON Schema that schema_answers' instances come from: references, combinators, unions,
arrays and objects (the scalars are schema_scalars'), and the analysis a violation needs."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import unquote

from .schema_scalars import Scalars, Unsatisfiable, hex_of, int_or

# Past this nesting depth, optional parts are left out: arrays get their minimum length, unions
# prefer null or a non-object branch, dicts get no entries. It ends recursive schemas.
SOFT_DEPTH = 6
# A schema that still nests this deep (a required property that recurses forever) has no instance.
HARD_DEPTH = 64

# Keywords that describe a schema without constraining its instances.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly", "$schema",
     "$id", "$anchor", "discriminator"}
)
_JSON_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
ALL_TYPES = frozenset(_JSON_TYPES)


class Generator(Scalars):
    """Walks a schema, building an instance; lenient mode ignores constraints it cannot meet."""

    def __init__(self, root: dict | bool, seed: str, lenient: bool):
        if not isinstance(root, (dict, bool)):
            raise TypeError(f"a JSON Schema is a dict or a bool, not {type(root).__name__}")
        self.root = root
        self.seed = seed
        self.lenient = lenient
        self.unions = 0  # unions entered without a value nesting deeper, to catch a union that contains itself

    # --- references and combinators ---

    def resolve(self, ref: str) -> dict | bool:
        """The subschema a local $ref points at; {} (anything) for one that cannot be followed."""
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref[1:].lstrip("/").split("/") if ref not in ("#", "#/") else ():
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node if isinstance(node, (dict, bool)) else {}

    def effective(self, schema: Any, hops: int = 0) -> Any:
        """schema with a $ref (its siblings winning) and single-entry allOf folded in."""
        while isinstance(schema, dict) and hops < HARD_DEPTH:
            hops += 1
            if isinstance(schema.get("$ref"), str):
                target = self.resolve(schema["$ref"])
                rest = {k: v for k, v in schema.items() if k != "$ref" and k not in _ANNOTATIONS}
                if not rest or isinstance(target, bool):
                    schema = target if not rest or target is False else rest
                else:
                    schema = {**target, **rest}
            elif isinstance(schema.get("allOf"), list):
                merged = {k: v for k, v in schema.items() if k != "allOf"}
                for part in schema["allOf"]:
                    part = self.effective(part, hops)
                    if part is False:
                        return False
                    if isinstance(part, dict):
                        merged = _merge(merged, part)
                schema = merged
            else:
                return schema
        if hops >= HARD_DEPTH:
            raise ValueError("the schema's $refs go round in a loop")
        return schema

    # --- values ---

    def value(self, schema: Any, path: str, depth: int) -> Any:
        """An instance of schema at path, depth levels of arrays and objects down."""
        if depth > HARD_DEPTH:
            raise ValueError(f"the schema has no finite instance: {path[:200]} nests too deep")
        schema = self.effective(schema)
        if schema is True:
            return self.text(path, {})
        if schema is False:
            return self.unsatisfiable(None)
        if not isinstance(schema, dict):
            raise TypeError(f"a JSON Schema is a dict or a bool, not {type(schema).__name__} (at {path})")
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        if isinstance(schema.get("enum"), list):
            members = schema["enum"]
            if not members:
                return self.unsatisfiable(None)
            return copy.deepcopy(members[self.h(path, "enum") % len(members)])
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                base = {k: v for k, v in schema.items() if k != key and k not in _ANNOTATIONS}
                branches = [b if not base else _merge(base, self.effective(b)) for b in schema[key]]
                return self.union(branches, path, depth, key)
        kind = schema.get("type")
        if schema.get("nullable") is True and isinstance(kind, str):
            kind = [kind, "null"]
        if isinstance(kind, list):
            return self.union([{**schema, "type": k} for k in kind], path, depth, "type")
        if kind is None:
            kind = _implied_type(schema)
        if kind == "null":
            return None
        if kind == "boolean":
            return self.h(path, "bool") % 2 == 1
        if kind == "integer":
            return self.integer(schema, path)
        if kind == "number":
            return self.number(schema, path)
        if kind == "string":
            return self.string(schema, path)
        if kind == "array":
            return self.array(schema, path, depth)
        if kind == "object":
            return self.object(schema, path, depth)
        return self.text(path, {})  # no type: anything, so something readable

    def union(self, branches: list, path: str, depth: int, salt: str) -> Any:
        """An instance of one of the branches: a hashed pick, trying the others if it cannot be met."""
        if not branches:
            return self.unsatisfiable(None)
        nulls = [b for b in branches if _is_null(self.effective(b))]
        others = [b for b in branches if not any(b is n for n in nulls)]
        if depth >= SOFT_DEPTH or self.unions >= SOFT_DEPTH:
            # Deep down (or in a union nested in itself): end recursion with null, else a branch that cannot nest.
            others.sort(key=lambda b: _nests(self.effective(b)))
            order = nulls + others
        else:
            shift = self.h(path, f"{salt}-branch") % len(others) if others else 0
            others = others[shift:] + others[:shift]
            # Optional fields are null one time in five.
            order = nulls + others if self.h(path, f"{salt}-null") % 5 == 0 else others + nulls
        self.unions += 1
        try:
            if self.unions > HARD_DEPTH:
                raise ValueError(f"the schema has no finite instance: a union at {path[:200]} contains itself")
            for branch in order:
                try:
                    return self.value(branch, path, depth)
                except Unsatisfiable:
                    continue
            raise Unsatisfiable
        finally:
            self.unions -= 1

    def array(self, schema: dict, path: str, depth: int) -> list:
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(items, list):  # the draft-07 tuple form
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        low = int_or(schema.get("minItems"), 0)
        high = int_or(schema.get("maxItems"), None)
        if depth >= SOFT_DEPTH:
            n = low
        elif prefix:
            n = max(low, len(prefix))
        else:
            n = max(low, 1 + self.h(path, "length") % 3)
        if high is not None:
            n = min(n, high)
        if items is False:
            n = min(n, len(prefix))
        if n < low:
            n = self.unsatisfiable(n)
        unique = schema.get("uniqueItems") is True
        out: list = []
        seen: set[str] = set()
        for i in range(n):
            sub = prefix[i] if i < len(prefix) else (items if isinstance(items, (dict, bool)) else {})
            element = self.value(sub, f"{path}[{i}]", depth + 1)
            if unique:
                key = json.dumps(element, sort_keys=True)
                for attempt in range(1, 8):  # draw again until the element is new
                    if key not in seen:
                        break
                    element = self.value(sub, f"{path}[{i}]~{attempt}", depth + 1)
                    key = json.dumps(element, sort_keys=True)
                if key in seen:  # a small choice, as an enum: take the first member not yet used
                    members = self.enum_values(sub)
                    if members is None and self.types(sub) == {"boolean"}:
                        members = [False, True]
                    for member in members or ():
                        if json.dumps(member, sort_keys=True) not in seen:
                            element, key = copy.deepcopy(member), json.dumps(member, sort_keys=True)
                            break
                if key in seen:  # no new element found: stop here if that is long enough
                    if len(out) >= low:
                        break
                    self.unsatisfiable(None)
                seen.add(key)
            out.append(element)
        return out

    def object(self, schema: dict, path: str, depth: int) -> dict:
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required", ()) if isinstance(r, str)]
        extra = schema.get("additionalProperties", None)
        closed = extra is False or schema.get("unevaluatedProperties") is False
        low = int_or(schema.get("minProperties"), 0)
        high = int_or(schema.get("maxProperties"), None)
        deep = depth >= SOFT_DEPTH
        out: dict[str, Any] = {}
        for name, sub in props.items():
            # A closed object (strict mode) gets every property; another, each optional one 3 times in 4.
            if name in required or closed or (not deep and self.h(f"{path}.{name}", "include") % 4 != 0):
                out[name] = self.value(sub, f"{path}.{name}", depth + 1)
        for name in required:
            if name not in out:
                out[name] = self.value({}, f"{path}.{name}", depth + 1)
        # A dict-like object (no properties, additionalProperties a schema or true) gets a few entries.
        wanted = 0
        if not props and (isinstance(extra, dict) or extra is True):
            wanted = 0 if deep else 1 + self.h(path, "entries") % 3
        wanted = max(wanted, low - len(out))
        if high is not None:
            wanted = min(wanted, high - len(out))
        names = schema.get("propertyNames")
        for i in range(max(0, wanted)):
            if closed:
                self.unsatisfiable(None)
                break
            key = None
            for attempt in range(8):
                salt = f"{path}{{{i}}}" + (f"~{attempt}" if attempt else "")
                candidate = self.value(names, salt, depth + 1) if isinstance(names, dict) else None
                if not isinstance(candidate, str):
                    candidate = "key-" + hex_of(self.seed, salt, "key", 6)
                if candidate not in out:
                    key = candidate
                    break
            if key is None:
                break
            out[key] = self.value(extra if isinstance(extra, (dict, bool)) else {}, f"{path}.{key}", depth + 1)
        if high is not None and len(out) > high:
            out = self.unsatisfiable(out)
        return out

    # --- analysis, for violations ---

    def types(self, schema: Any, hops: int = 0) -> frozenset[str]:
        """The JSON types some instance of schema may have ("integer" inside "number")."""
        if hops > HARD_DEPTH:
            return ALL_TYPES
        schema = self.effective(schema)
        if schema is True or schema == {}:
            return ALL_TYPES
        if not isinstance(schema, dict):
            return frozenset()
        if "const" in schema:
            return frozenset({_json_type(schema["const"])})
        if isinstance(schema.get("enum"), list):
            found = frozenset(_json_type(v) for v in schema["enum"])
            return found | {"integer"} if "number" in found else found
        kind = schema.get("type")
        allowed = ALL_TYPES
        if isinstance(kind, str):
            allowed = frozenset({kind})
        elif isinstance(kind, list):
            allowed = frozenset(k for k in kind if isinstance(k, str))
        if schema.get("nullable") is True:
            allowed |= {"null"}
        if "number" in allowed:
            allowed |= {"integer"}
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                union = frozenset().union(*(self.types(b, hops + 1) for b in schema[key]))
                allowed &= union
        return allowed

    def enum_values(self, schema: Any) -> list | None:
        """The values schema is limited to (its null branch too), or None if it is not an enum."""
        schema = self.effective(schema)
        if not isinstance(schema, dict):
            return None
        if "const" in schema:
            return [schema["const"]]
        if isinstance(schema.get("enum"), list):
            return list(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                values = []
                for branch in schema[key]:
                    branch = self.effective(branch)
                    if _is_null(branch):
                        values.append(None)
                        continue
                    members = self.enum_values(branch)
                    if members is None:
                        return None
                    values += members
                return values
        return None




def _merge(a: dict, b: Any) -> Any:
    """The conjunction of two schemas, roughly: b's keywords win, but properties and required add up."""
    if b is True:
        return a
    if not isinstance(b, dict):
        return b
    merged = {**a, **b}
    if isinstance(a.get("properties"), dict) and isinstance(b.get("properties"), dict):
        merged["properties"] = {**a["properties"], **b["properties"]}
    if isinstance(a.get("required"), list) and isinstance(b.get("required"), list):
        merged["required"] = list(dict.fromkeys([*a["required"], *b["required"]]))
    return merged


def _implied_type(schema: dict) -> str | None:
    """The type a schema without "type" describes by its keywords, or None for any."""
    keys = schema.keys()
    if keys & {"properties", "additionalProperties", "required", "propertyNames", "minProperties", "maxProperties"}:
        return "object"
    if keys & {"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}:
        return "array"
    if keys & {"minLength", "maxLength", "pattern", "format"}:
        return "string"
    if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}:
        return "number"
    return None


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and (
        schema.get("type") == "null" or ("const" in schema and schema["const"] is None) or schema.get("enum") == [None]
    )


def _nests(schema: Any) -> bool:
    """Whether a branch may hold further values (so is worse for ending a recursion)."""
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind if kind is not None else _implied_type(schema)]
    return any(k in ("object", "array", None) for k in kinds) and "const" not in schema and "enum" not in schema


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object"
