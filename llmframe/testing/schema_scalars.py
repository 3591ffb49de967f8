"""Deterministic scalar values of JSON Schemas (strings, numbers, integers), for schema_answers' generator.

Every choice comes from a hash of the seed and the value's JSON path (hash_of, hex_of). A string's
format (date, email, uuid, ...) and its pattern are honoured: a pattern by generating a match from
its regular expression's parse tree (literals, classes, repeats, groups, alternatives).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import uuid
from typing import Any

try:  # Python 3.11+
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre_parse  # type: ignore[no-redef]

# Characters a generated pattern match is drawn from, readable ones first.
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_ ."


class Unsatisfiable(Exception):
    """This (sub)schema cannot be met by the generator; a union tries its next branch."""


# --- hashing ----------------------------------------------------------------


def hash_of(seed: str, path: str, salt: str) -> int:
    """A 64-bit number from the seed, the JSON path of a value, and what is being decided about it."""
    digest = hashlib.blake2b(f"{seed}\x00{path}\x00{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hex_of(seed: str, path: str, salt: str, n: int) -> str:
    """n hex digits from the seed and path."""
    out, block = "", 0
    while len(out) < n:
        out += hashlib.blake2b(f"{seed}\x00{path}\x00{salt}\x00{block}".encode(), digest_size=32).hexdigest()
        block += 1
    return out[:n]


# --- scalar values ------------------------------------------------------------


class Scalars:
    """The generator's scalar values; lenient mode ignores constraints it cannot meet."""

    seed: str
    lenient: bool

    def h(self, path: str, salt: str) -> int:
        """The hashed number of a decision (`salt`) about the value at path."""
        return hash_of(self.seed, path, salt)

    def unsatisfiable(self, fallback: Any) -> Any:
        """In strict mode, give up on this branch; in lenient mode, carry on with fallback."""
        if self.lenient:
            return fallback
        raise Unsatisfiable

    def text(self, path: str, schema: dict) -> str:
        """A readable string, text-<8 hex>, fitted to minLength and maxLength."""
        low = int_or(schema.get("minLength"), 0)
        high = int_or(schema.get("maxLength"), None)
        word = "text-" + hex_of(self.seed, path, "text", 8)
        if len(word) < low:
            word += hex_of(self.seed, path, "text-more", low - len(word))
        if high is not None and len(word) > high:
            word = hex_of(self.seed, path, "text", high)
        if len(word) < low:  # minLength > maxLength
            return self.unsatisfiable(word)
        return word

    def string(self, schema: dict, path: str) -> str:
        low = int_or(schema.get("minLength"), 0)
        high = int_or(schema.get("maxLength"), None)

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
                raise Unsatisfiable
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


# --- formats ------------------------------------------------------------------


def _date(gen: Scalars, path: str) -> dt.date:
    days = gen.h(path, "date") % (30 * 365)
    return dt.date(2000, 1, 1) + dt.timedelta(days=days)


def _time(gen: Scalars, path: str) -> str:
    seconds = gen.h(path, "time") % 86400
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


_FORMATS = {
    "date": lambda gen, path: _date(gen, path).isoformat(),
    "date-time": lambda gen, path: f"{_date(gen, path).isoformat()}T{_time(gen, path)}Z",
    "time": lambda gen, path: _time(gen, path) + "Z",
    "duration": lambda gen, path: f"P{gen.h(path, 'duration') % 30}DT{gen.h(path, 'hours') % 24}H",
    "email": lambda gen, path: f"user-{hex_of(gen.seed, path, 'email', 6)}@example.com",
    "idn-email": lambda gen, path: f"user-{hex_of(gen.seed, path, 'email', 6)}@example.com",
    "uri": lambda gen, path: f"https://example.com/{hex_of(gen.seed, path, 'uri', 8)}",
    "iri": lambda gen, path: f"https://example.com/{hex_of(gen.seed, path, 'uri', 8)}",
    "uri-reference": lambda gen, path: f"https://example.com/{hex_of(gen.seed, path, 'uri', 8)}",
    "iri-reference": lambda gen, path: f"https://example.com/{hex_of(gen.seed, path, 'uri', 8)}",
    "uuid": lambda gen, path: str(uuid.UUID(hex_of(gen.seed, path, "uuid", 32), version=4)),
    "hostname": lambda gen, path: f"host-{hex_of(gen.seed, path, 'host', 6)}.example.com",
    "idn-hostname": lambda gen, path: f"host-{hex_of(gen.seed, path, 'host', 6)}.example.com",
    "ipv4": lambda gen, path: "10." + ".".join(str(gen.h(path, f"ip{i}") % 256) for i in range(3)),
    "ipv6": lambda gen, path: "fd00::" + ":".join(hex_of(gen.seed, path, f"ip{i}", 4) for i in range(3)),
}


# --- regular expressions -----------------------------------------------------------


def _pattern_match(pattern: str, pick) -> str | None:
    """A string the pattern matches, built from its parse tree; None if it uses what is not supported.

    pick(n) returns a hashed number. Anchors and lookarounds are skipped: the caller checks the result.
    """
    try:
        return _emit(list(_sre_parse.parse(pattern)), pick, [0])
    except (Unsatisfiable, ValueError, TypeError, re.error, RecursionError):
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
            raise Unsatisfiable
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
    raise Unsatisfiable


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


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def int_or(x: Any, default: Any) -> Any:
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
