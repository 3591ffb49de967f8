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

import copy
import datetime as dt
import hashlib
import json
import math
import re
import uuid
from typing import Any
from urllib.parse import unquote

try:  # Python 3.11+
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = ["instance", "violation", "invalid_json"]

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
_ALL_TYPES = frozenset(_JSON_TYPES)
# Characters a generated pattern match is drawn from, readable ones first.
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_ ."


class _Unsatisfiable(Exception):
    """This (sub)schema cannot be met by the generator; a union tries its next branch."""


def instance(schema: dict | bool, seed: str) -> Any:
    """Return a JSON value (dicts, lists, str, int, float, bool, None) conforming to schema, chosen by seed.

    Local $refs (#/$defs/..., #/definitions/..., #) are followed. A pattern is honoured when its regular
    expression is simple enough to generate a match for (literals, classes, repeats, groups,
    alternatives); otherwise, as a last resort, it is ignored. Raises ValueError for a schema whose
    instances would nest without end, and TypeError for one that is not a dict or bool.
    """
    try:
        return _Generator(schema, seed, lenient=False).value(schema, "$", 0)
    except _Unsatisfiable:
        # Ignore what cannot be met (an unsupported pattern, contradictory bounds) rather than fail.
        return _Generator(schema, seed, lenient=True).value(schema, "$", 0)


_NOTHING = object()


def violation(schema: dict | bool, seed: str, value: Any = _NOTHING) -> Any:
    """Return valid JSON that does not conform to schema: value (default: instance(schema, seed)) spoiled.

    For an object schema, one of: a required property left out (one without a default, that is not
    nullable, where there is one), a property of the wrong type, or a property outside its enum.
    Otherwise the whole value is replaced by one of a type the schema does not allow. Raises ValueError
    where no JSON value violates the schema (as for {}).
    """
    gen = _Generator(schema, seed, lenient=True)
    if value is _NOTHING:
        value = instance(schema, seed)
    root = gen.effective(schema)
    if isinstance(value, dict) and isinstance(root, dict) and "object" in gen.types(root):
        props = root.get("properties") if isinstance(root.get("properties"), dict) else {}
        required = [r for r in root.get("required", ()) if isinstance(r, str) and r in value]
        # Leaving out a property with a default, or a nullable one, breaks the schema but not pydantic.
        droppable = [r for r in required if not _lenient_property(gen, props.get(r, {}))]
        retypable = [k for k in value if k in props and gen.types(props[k]) != _ALL_TYPES]
        outside = [k for k in value if k in props and gen.enum_values(props[k]) is not None]
        found = (("missing", droppable), ("type", retypable), ("enum", outside))
        modes = [(name, keys) for name, keys in found if keys]
        if not modes and required:
            modes = [("missing", required)]
        if modes:
            mode, keys = modes[_hash(seed, "$", "violation") % len(modes)]
            key = keys[_hash(seed, "$", "violation-key") % len(keys)]
            spoiled = dict(value)
            if mode == "missing":
                del spoiled[key]
            elif mode == "type":
                spoiled[key] = _wrong_type(gen.types(props[key]), seed)
            else:
                spoiled[key] = _outside(gen.enum_values(props[key]), seed)
            return spoiled
    allowed = gen.types(schema)
    if allowed != _ALL_TYPES:
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
    spoiled = variants[_hash(seed, "$", "invalid-json") % len(variants)]
    try:
        json.loads(spoiled)
    except ValueError:
        return spoiled
    return variants[0]  # a cut that still parses, as a number cut in half can


# --- hashing ----------------------------------------------------------------


def _hash(seed: str, path: str, salt: str) -> int:
    """A 64-bit number from the seed, the JSON path of a value, and what is being decided about it."""
    digest = hashlib.blake2b(f"{seed}\x00{path}\x00{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _hex(seed: str, path: str, salt: str, n: int) -> str:
    """n hex digits from the seed and path."""
    out, block = "", 0
    while len(out) < n:
        out += hashlib.blake2b(f"{seed}\x00{path}\x00{salt}\x00{block}".encode(), digest_size=32).hexdigest()
        block += 1
    return out[:n]


# --- the generator ------------------------------------------------------------


class _Generator:
    """Walks a schema, building an instance; lenient mode ignores constraints it cannot meet."""

    def __init__(self, root: dict | bool, seed: str, lenient: bool):
        if not isinstance(root, (dict, bool)):
            raise TypeError(f"a JSON Schema is a dict or a bool, not {type(root).__name__}")
        self.root = root
        self.seed = seed
        self.lenient = lenient
        self.unions = 0  # unions entered without a value nesting deeper, to catch a union that contains itself

    def h(self, path: str, salt: str) -> int:
        return _hash(self.seed, path, salt)

    def unsatisfiable(self, fallback: Any) -> Any:
        """In strict mode, give up on this branch; in lenient mode, carry on with fallback."""
        if self.lenient:
            return fallback
        raise _Unsatisfiable

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
                except _Unsatisfiable:
                    continue
            raise _Unsatisfiable
        finally:
            self.unions -= 1

    def text(self, path: str, schema: dict) -> str:
        """A readable string, text-<8 hex>, fitted to minLength and maxLength."""
        low = _int_or(schema.get("minLength"), 0)
        high = _int_or(schema.get("maxLength"), None)
        word = "text-" + _hex(self.seed, path, "text", 8)
        if len(word) < low:
            word += _hex(self.seed, path, "text-more", low - len(word))
        if high is not None and len(word) > high:
            word = _hex(self.seed, path, "text", high)
        if len(word) < low:  # minLength > maxLength
            return self.unsatisfiable(word)
        return word

    def string(self, schema: dict, path: str) -> str:
        low = _int_or(schema.get("minLength"), 0)
        high = _int_or(schema.get("maxLength"), None)

        def fits(word: str) -> bool:
            return len(word) >= low and (high is None or len(word) <= high)
        pattern = schema.get("pattern")
        regex = None
        if isinstance(pattern, str):
            try:
                regex = re.compile(pattern)
            except re.error:
                regex = None  # ECMA-262 syntax Python lacks (\p{L}...): cannot check, so ignore it

        def matches(word: str) -> bool:
            return regex is None or regex.search(word) is not None
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            word = _FORMATS[fmt](self, path)
            if fits(word) and matches(word):
                return word
            if regex is None:
                return self.unsatisfiable(word)
        if regex is not None:
            for attempt in range(8):
                word = _pattern_match(pattern, lambda n, a=attempt: self.h(path, f"pattern-{a}-{n}"))
                if word is not None and fits(word) and matches(word):
                    return word
            if not self.lenient:
                raise _Unsatisfiable
        return self.text(path, schema)

    def integer(self, schema: dict, path: str) -> int:
        (low, low_open), (high, high_open) = _bounds(schema)
        first = -math.inf if low is None else (math.floor(low) + 1 if low_open else math.ceil(low))
        last = math.inf if high is None else (math.ceil(high) - 1 if high_open else math.floor(high))
        first, last = _default_span(first, last, 100)
        step = schema.get("multipleOf")
        if _is_number(step) and step > 0:
            k_first, k_last = math.ceil(first / step), math.floor(last / step)
            for k in _span(k_first, k_last, self.h(path, "int"), 4):
                candidate = k * step
                if float(candidate).is_integer():
                    return int(candidate)
            return self.unsatisfiable(first)
        if first > last:
            return self.unsatisfiable(first)
        return first + self.h(path, "int") % (last - first + 1)

    def number(self, schema: dict, path: str) -> float | int:
        (low, low_open), (high, high_open) = _bounds(schema)
        low_f = -math.inf if low is None else float(low)
        high_f = math.inf if high is None else float(high)
        low_f, high_f = _default_span(low_f, high_f, 100.0)

        def inside(x: float) -> bool:
            return (x > low_f if low_open else x >= low_f) and (x < high_f if high_open else x <= high_f)
        step = schema.get("multipleOf")
        if _is_number(step) and step > 0:
            for k in _span(math.ceil(low_f / step), math.floor(high_f / step), self.h(path, "number"), 4):
                candidate = k * step if isinstance(step, int) else round(k * step, 12)
                if inside(candidate):
                    return candidate
            return self.unsatisfiable(low_f)
        if low_f > high_f or (low_f == high_f and (low_open or high_open)):
            return self.unsatisfiable(low_f)
        fraction = (self.h(path, "number") % 9999 + 1) / 10000  # in (0, 1), never a bound
        x = low_f + fraction * (high_f - low_f)
        for digits in (2, 4, 8):
            if inside(round(x, digits)):
                return round(x, digits)
        return x if inside(x) else self.unsatisfiable(low_f)

    def array(self, schema: dict, path: str, depth: int) -> list:
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(items, list):  # the draft-07 tuple form
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        low = _int_or(schema.get("minItems"), 0)
        high = _int_or(schema.get("maxItems"), None)
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
        low = _int_or(schema.get("minProperties"), 0)
        high = _int_or(schema.get("maxProperties"), None)
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
                    candidate = "key-" + _hex(self.seed, salt, "key", 6)
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
            return _ALL_TYPES
        schema = self.effective(schema)
        if schema is True or schema == {}:
            return _ALL_TYPES
        if not isinstance(schema, dict):
            return frozenset()
        if "const" in schema:
            return frozenset({_json_type(schema["const"])})
        if isinstance(schema.get("enum"), list):
            found = frozenset(_json_type(v) for v in schema["enum"])
            return found | {"integer"} if "number" in found else found
        kind = schema.get("type")
        allowed = _ALL_TYPES
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


# --- formats ------------------------------------------------------------------


def _date(gen: _Generator, path: str) -> dt.date:
    days = gen.h(path, "date") % (30 * 365)
    return dt.date(2000, 1, 1) + dt.timedelta(days=days)


def _time(gen: _Generator, path: str) -> str:
    seconds = gen.h(path, "time") % 86400
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


_FORMATS = {
    "date": lambda gen, path: _date(gen, path).isoformat(),
    "date-time": lambda gen, path: f"{_date(gen, path).isoformat()}T{_time(gen, path)}Z",
    "time": lambda gen, path: _time(gen, path) + "Z",
    "duration": lambda gen, path: f"P{gen.h(path, 'duration') % 30}DT{gen.h(path, 'hours') % 24}H",
    "email": lambda gen, path: f"user-{_hex(gen.seed, path, 'email', 6)}@example.com",
    "idn-email": lambda gen, path: f"user-{_hex(gen.seed, path, 'email', 6)}@example.com",
    "uri": lambda gen, path: f"https://example.com/{_hex(gen.seed, path, 'uri', 8)}",
    "iri": lambda gen, path: f"https://example.com/{_hex(gen.seed, path, 'uri', 8)}",
    "uri-reference": lambda gen, path: f"https://example.com/{_hex(gen.seed, path, 'uri', 8)}",
    "iri-reference": lambda gen, path: f"https://example.com/{_hex(gen.seed, path, 'uri', 8)}",
    "uuid": lambda gen, path: str(uuid.UUID(_hex(gen.seed, path, "uuid", 32), version=4)),
    "hostname": lambda gen, path: f"host-{_hex(gen.seed, path, 'host', 6)}.example.com",
    "idn-hostname": lambda gen, path: f"host-{_hex(gen.seed, path, 'host', 6)}.example.com",
    "ipv4": lambda gen, path: "10." + ".".join(str(gen.h(path, f"ip{i}") % 256) for i in range(3)),
    "ipv6": lambda gen, path: "fd00::" + ":".join(_hex(gen.seed, path, f"ip{i}", 4) for i in range(3)),
}


# --- regular expressions -----------------------------------------------------------


def _pattern_match(pattern: str, pick) -> str | None:
    """A string the pattern matches, built from its parse tree; None if it uses what is not supported.

    pick(n) returns a hashed number. Anchors and lookarounds are skipped: the caller checks the result.
    """
    try:
        return _emit(list(_sre_parse.parse(pattern)), pick, [0])
    except (_Unsatisfiable, ValueError, TypeError, re.error, RecursionError):
        return None


def _emit(items: list, pick, counter: list[int]) -> str:
    def choose(n: int) -> int:
        counter[0] += 1
        return pick(counter[0]) % n

    out = []
    for op, arg in items:
        name = getattr(op, "name", str(op))
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if arg != ord("a") else "b")
        elif name == "ANY":
            out.append(_ALPHABET[choose(36)])
        elif name == "IN":
            out.append(_from_class(arg, choose))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            high = min(high, low + 3)
            out += [_emit(list(sub), pick, counter) for _ in range(low + choose(high - low + 1))]
        elif name == "SUBPATTERN":
            out.append(_emit(list(arg[-1]), pick, counter))
        elif name == "ATOMIC_GROUP":
            out.append(_emit(list(arg), pick, counter))
        elif name == "BRANCH":
            branches = arg[1]
            out.append(_emit(list(branches[choose(len(branches))]), pick, counter))
        elif name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue
        else:  # back-references, conditionals
            raise _Unsatisfiable
    return "".join(out)


def _from_class(items: list, choose) -> str:
    """A readable character of a character class."""
    negated = bool(items) and getattr(items[0][0], "name", "") == "NEGATE"
    members = [c for c in _ALPHABET if _in_class(items, c) != negated]
    if members:
        return members[choose(len(members))]
    if not negated:
        for op, arg in items:
            name = getattr(op, "name", "")
            if name == "LITERAL":
                return chr(arg)
            if name == "RANGE":
                return chr(arg[0])
    raise _Unsatisfiable


def _in_class(items: list, c: str) -> bool:
    for op, arg in items:
        name = getattr(op, "name", "")
        if name == "LITERAL" and chr(arg) == c:
            return True
        if name == "RANGE" and arg[0] <= ord(c) <= arg[1]:
            return True
        if name == "CATEGORY":
            category = getattr(arg, "name", "")
            test = {
                "CATEGORY_DIGIT": c.isdigit(),
                "CATEGORY_NOT_DIGIT": not c.isdigit(),
                "CATEGORY_WORD": c.isalnum() or c == "_",
                "CATEGORY_NOT_WORD": not (c.isalnum() or c == "_"),
                "CATEGORY_SPACE": c.isspace(),
                "CATEGORY_NOT_SPACE": not c.isspace(),
            }
            if test.get(category, False):
                return True
    return False


# --- helpers -------------------------------------------------------------------


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


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int_or(x: Any, default: Any) -> Any:
    return int(x) if _is_number(x) and x >= 0 else default


def _bounds(schema: dict) -> tuple[tuple[float | None, bool], tuple[float | None, bool]]:
    """((low, exclusive), (high, exclusive)) from minimum/exclusiveMinimum/maximum/exclusiveMaximum."""
    low, low_open = (schema["minimum"], False) if _is_number(schema.get("minimum")) else (None, False)
    high, high_open = (schema["maximum"], False) if _is_number(schema.get("maximum")) else (None, False)
    if schema.get("exclusiveMinimum") is True:  # draft 4: a flag on minimum
        low_open = low is not None
    elif _is_number(schema.get("exclusiveMinimum")) and (low is None or schema["exclusiveMinimum"] >= low):
        low, low_open = schema["exclusiveMinimum"], True
    if schema.get("exclusiveMaximum") is True:
        high_open = high is not None
    elif _is_number(schema.get("exclusiveMaximum")) and (high is None or schema["exclusiveMaximum"] <= high):
        high, high_open = schema["exclusiveMaximum"], True
    return (low, low_open), (high, high_open)


def _default_span(low, high, width):
    """Fill in missing bounds: [0, width] when neither is set, else width from the one that is."""
    if math.isinf(low) and math.isinf(high):
        return type(width)(0), width
    if math.isinf(low):
        return high - width, high
    if math.isinf(high):
        return low, low + width
    return low, high


def _span(first: int, last: int, h: int, tries: int):
    """Up to tries integers of [first, last], starting at a hashed one."""
    if first > last:
        return
    size = last - first + 1
    start = h % size
    for i in range(min(tries, size)):
        yield first + (start + i) % size


def _lenient_property(gen: _Generator, schema: Any) -> bool:
    """Whether leaving a property out may still pass a pydantic model: it has a default, or allows null."""
    raw = schema if isinstance(schema, dict) else {}
    return "default" in raw or "null" in gen.types(schema)


def _wrong_type(allowed: frozenset[str], seed: str) -> Any:
    """A value of a type the schema does not allow, of a kind pydantic does not coerce either."""
    candidates = {
        "string": f"not-valid-{_hex(seed, '$', 'wrong', 6)}",  # not numeric, not a bool word
        "object": {"unexpected": f"text-{_hex(seed, '$', 'wrong', 8)}"},
        "array": [f"text-{_hex(seed, '$', 'wrong', 8)}"],
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
        candidate = f"not-in-enum-{_hex(seed, '$', f'enum{attempt}', 6)}"
        if candidate not in members:
            return candidate
    raise ValueError("no value outside the enum found")  # pragma: no cover
