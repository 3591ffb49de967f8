"""Prompt templates: "{column}" strings, chat message lists and callables, checked against a frame's rows."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from .. import constants
from ..errors import TemplateError
from .media import Media
from .request import canonical_json
from .rows import Rows, containers_as_json, missing_reasons

if TYPE_CHECKING:
    from .media_template import MediaSettings

# The encoder json.dumps(str, ensure_ascii=False) itself uses, so both spellings give identical text.
_json_string = json.encoder.encode_basestring

Messages = list[dict]
TemplateLike = Union[str, Sequence[dict], Callable[[dict], Union[str, Messages, None]]]

_ROLES = ("system", "user", "assistant", "developer")


@dataclass(frozen=True, slots=True)
class _Text:
    """One template string, rewritten to positional fields so a row renders with one format call."""

    source: str
    positional: str
    columns: tuple[Any, ...]  # column labels: strings, or integers ({0} is the column 0)
    plain: tuple[bool, ...]  # field is a bare "{column}": containers in it render as JSON

    def render(self, values: Sequence[Any]) -> str:
        return self.positional.format(*values)


def _parse(source: str, columns: Sequence, positional_column: str | None) -> _Text:
    """Map each placeholder to a frame column; raise TemplateError naming the fix."""
    if not isinstance(source, str):
        raise TemplateError(f"a template must be a string, got {type(source).__name__}")
    known = _placeholder_names(columns)
    numbered = any(isinstance(c, int) for alike in known.values() for c in alike)  # then {5} names a column too
    used: list = []
    plain: list[bool] = []
    out: list[str] = []
    try:
        parts = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise TemplateError(f"bad template {source!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for literal, name, spec, conversion in parts:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            continue
        if spec and "{" in spec:
            raise TemplateError(f"nested placeholders in a format spec are not supported: {{{name}:{spec}}}"
                                f"{_literal_hint(name, spec, always=True)}")
        if name in known:
            column, rest = _column_named(known, name), ""
        elif name == "" or name.isdigit() and not numbered:
            if positional_column is None:
                raise TemplateError(
                    f"positional placeholder {{{name}}} in {source!r}: on a DataFrame name the column, "
                    f"e.g. {{{next(iter(known), 'column')}}}"
                )
            if name not in ("", "0"):
                raise TemplateError(f"a Series has one value per row: use {{}}, not {{{name}}}")
            column, rest = positional_column, ""
        else:
            cut = min((i for i in (name.find("."), name.find("[")) if i >= 0), default=len(name))
            column, rest = name[:cut], name[cut:]
            if column not in known:
                unusable = [c for c in columns if str(c) not in known]
                hint = f" (a name neither a string nor an integer, such as {unusable[0]!r}, cannot be a placeholder: " \
                       "rename it)" if unusable else ""
                raise TemplateError(
                    f"template uses column {column!r}, which the frame does not have; "
                    f"columns are {sorted(map(str, columns))}{hint}{_literal_hint(name, spec)}"
                )
            column = _column_named(known, column)
        out.append("{" + str(len(used)) + rest + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
        used.append(column)
        plain.append(not rest and not conversion and not spec)
    return _Text(source, "".join(out), tuple(used), tuple(plain))


def _literal_hint(name: str, spec: str | None, *, always: bool = False) -> str:
    """For braces that look like literal text (JSON, code) rather than a column: how to write them."""
    if not always and re.fullmatch(r"[\w .\-]*", name):  # a plausible column name: the column list says enough
        return ""
    braces = "{" + name + (f":{spec}" if spec else "") + "}"
    doubled = braces.replace("{", "{{").replace("}", "}}")
    return (f". If {braces} is literal text (JSON, code), double its braces: {doubled}; or pass a function "
            "row -> prompt as the template")


def _placeholder_names(columns: Sequence) -> dict[str, list]:
    """Placeholder text -> the columns it names: strings as they are, integers in digits ({0} is the column 0)."""
    known: dict[str, list] = {}
    for column in columns:
        if isinstance(column, (int, np.integer)) and not isinstance(column, (bool, np.bool_)):
            column = int(column)
        elif not isinstance(column, str):
            continue
        alike = known.setdefault(str(column), [])
        if column not in alike:  # a repeated name is refused by render, with its own fix
            alike.append(column)
    return known


def _column_named(known: dict[str, list], name: str) -> Any:
    alike = known[name]
    if len(alike) > 1:  # "0" and 0
        raise TemplateError(f"{{{name}}} could be the column {alike[0]!r} or the column {alike[1]!r}: rename one")
    return alike[0]


class Prompts:
    """The prompt of every row, rendered on demand a chunk of rows at a time, plus why rows are skipped.

    Nothing is held per row: a million rendered prompts would cost hundreds of megabytes, and a
    cached re-run never needs them again. A "row" here is what rows_at gives: a tuple of contents
    for fixed-role templates, a message list for function templates.
    """

    roles: tuple[str, ...] | None = None  # fixed roles for string/message templates; None for functions

    def __init__(self, size: int, skipped: dict[int, str]):
        self.size = size
        self.skipped = skipped

    def __len__(self) -> int:
        return self.size

    def skip(self, i: int, reason: str) -> None:
        """Leave row i unsent, with the reason its error column will show."""
        self.skipped[i] = reason

    def settled(self) -> None:
        """Every row is keyed (media templates raise here when no row's media could be used)."""

    def chunks(self, size: int = constants.RENDER_CHUNK_ROWS) -> Iterator[np.ndarray]:
        """Positions of the rows to send, in order, a chunk at a time."""
        skipped = np.fromiter(self.skipped, dtype=np.int64, count=len(self.skipped))
        for start in range(0, self.size, size):
            positions = np.arange(start, min(start + size, self.size), dtype=np.int64)
            yield np.setdiff1d(positions, skipped, assume_unique=True) if len(skipped) else positions

    def rows_at(self, positions: Sequence[int]) -> list:
        """The rendered rows at these positions (none of them skipped)."""
        raise NotImplementedError

    def messages_of(self, row) -> Messages:
        """A rendered row as chat messages."""
        return row

    def json_of(self, rows: list) -> list[str]:
        """canonical_json of each row's messages."""
        return [canonical_json(row) for row in rows]

    def chars_of(self, row) -> int:
        """The characters of a row's contents, for the prompt-length estimate."""
        return sum(len(m["content"]) for m in row)

    def messages(self, i: int) -> Messages:
        """The chat messages of row i."""
        return self.messages_of(self.rows_at([i])[0])

    def messages_json(self) -> Iterator[str | None]:
        """canonical_json(messages(i)) of every row, None for skipped ones, rendered chunk by chunk."""
        done = 0
        for positions in self.chunks():
            texts = self.json_of(self.rows_at(positions))
            for i, text in zip(positions.tolist(), texts):
                yield from (None for _ in range(i - done))
                yield text
                done = i + 1
        yield from (None for _ in range(self.size - done))


class _FramePrompts(Prompts):
    """String and message templates: each row rendered from the frame's values when asked for."""

    def __init__(self, rows: Rows, parts: list[tuple[str, _Text]], skipped: dict[int, str]):
        super().__init__(len(rows), skipped)
        self.frame = rows
        self.parts = parts
        self.roles = tuple(role for role, _ in parts)
        # The canonical form of fixed-role messages with a slot per content: the same text as
        # canonical_json of the message dicts, much faster.
        self._form = ("[" + ",".join('{{"content":{},"role":' + _json_string(role).replace("{", "{{").replace("}", "}}")
                                     + "}}" for role in self.roles) + "]").format

    def rows_at(self, positions: Sequence[int]) -> list[tuple[str, ...]]:
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return []
        values = {c: self.frame.values(c, positions) for _, text in self.parts for c in text.columns}
        as_text = {c: containers_as_json(self.frame, c, v) for c, v in values.items()}
        cols_per_part = [[(as_text if plain else values)[c] for c, plain in zip(text.columns, text.plain)]
                         for _, text in self.parts]
        try:
            # Column-wise: one format call per row and part, no per-row Python frames.
            parts = [_render_part(text, cols, len(positions)) for (_, text), cols in zip(self.parts, cols_per_part)]
        except (KeyError, IndexError, AttributeError, ValueError, TypeError):
            raise self._misfit(positions, cols_per_part) from None
        return list(zip(*parts))

    def _misfit(self, positions: np.ndarray, cols_per_part: list) -> TemplateError:
        """The error naming the first row the template does not fit (found row by row, only on failure)."""
        for k, i in enumerate(positions.tolist()):
            try:
                for (_, text), cols in zip(self.parts, cols_per_part):
                    text.render([col[k] for col in cols])
            except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
                return TemplateError(
                    f"the template does not fit the row at index {self.frame.label(i)!r}: {type(exc).__name__}: {exc}"
                )
        return TemplateError("the template does not fit the frame")

    def messages_of(self, row: tuple[str, ...]) -> Messages:
        return [{"role": role, "content": content} for role, content in zip(self.roles, row)]

    def json_of(self, rows: list) -> list[str]:
        fill, encode = self._form, _json_string
        return [fill(*map(encode, row)) for row in rows]

    def chars_of(self, row: tuple[str, ...]) -> int:
        return sum(map(len, row))


class _ListPrompts(Prompts):
    """Function templates: the function runs once per row, so its messages are kept (it may not be pure)."""

    def __init__(self, rows: list, skipped: dict[int, str]):
        super().__init__(len(rows), skipped)
        self.rows = rows

    def rows_at(self, positions: Sequence[int]) -> list[Messages]:
        rows = self.rows
        return [rows[i] for i in np.asarray(positions, dtype=np.int64).tolist()]


class Template:
    """A compiled template: which columns it reads and how a row becomes chat messages."""

    def __init__(self, template: TemplateLike, columns: Sequence, *, system: str | None = None,
                 positional_column: str | None = None, context: str | None = None):
        self.function: Callable | None = None
        self.system = system
        self.context = context  # context=: a user message of its own after the system prompt, its text as it is
        if context is not None and not isinstance(context, str):
            raise TemplateError(f"context must be a string, got {type(context).__name__}")
        self.parts: list[tuple[str, _Text]] = []
        self.media: list[tuple[str, list]] | None = None  # (role, [_Text | Media]) where a content is a list of parts
        if system is not None and not isinstance(system, str):
            raise TemplateError(f"system must be a string, got {type(system).__name__}")
        if callable(template) and not isinstance(template, str):
            self.function = template
            return
        if isinstance(template, str):
            messages = [{"role": "user", "content": template}]
        elif _is_parts(template):  # strings and media parts: one user message
            messages = [{"role": "user", "content": list(template)}]
        elif isinstance(template, Sequence) and template and all(isinstance(m, dict) for m in template):
            messages = list(template)
        else:
            raise TemplateError(
                "template must be a string with {column} placeholders, a list of "
                "{'role': ..., 'content': ...} messages, or a function row -> prompt"
            )
        if system is not None:
            if any(m.get("role") == "system" for m in messages):
                raise TemplateError("system= given, but the messages already have a system message: keep one")
            messages = [{"role": "system", "content": system}, *messages]
        if context is not None:  # a document's braces are text, not placeholders
            messages = with_context(messages, context.replace("{", "{{").replace("}", "}}"))
        for m in messages:
            if set(m) != {"role", "content"} or m["role"] not in _ROLES:
                raise TemplateError(f"each message needs exactly a role in {_ROLES} and a content, got {m!r}")
        if any(isinstance(m["content"], (list, tuple)) for m in messages):  # text and media parts
            self.media = [(m["role"], _parts(m, columns, positional_column)) for m in messages]
            return
        for m in messages:
            self.parts.append((m["role"], _parse(m["content"], columns, positional_column)))

    @property
    def columns(self) -> list:
        """The frame columns the template reads, in first-use order (all of them for a function)."""
        if self.media is not None:
            return list(dict.fromkeys(c for _, parts in self.media for p in parts
                                      for c in ((p.column,) if isinstance(p, Media) else p.columns)))
        return list(dict.fromkeys(c for _, text in self.parts for c in text.columns))

    def render(self, frame: Rows, *, missing: str = "skip", allow_no_placeholder: bool = False,
               media: MediaSettings | None = None) -> Prompts:
        """Render every row; raise TemplateError before anything is sent if the frame does not fit.

        missing: one of constants.MISSING_MODES (the options table checks it); media: how media parts are sent.
        """
        dup = sorted(str(c) for c, n in Counter(frame.columns).items() if n > 1)
        if dup:
            raise TemplateError(f"the frame has duplicate column names {dup}: rename them first")
        if self.function is not None:
            return self._render_function(frame)
        if not self.columns and len(frame) and not allow_no_placeholder:
            raise TemplateError(
                "the template has no {column} placeholder, so every row would get the same prompt; "
                "pass allow_no_placeholder=True if that is what you want"
            )
        skipped: dict[int, str] = {}
        if self.columns:
            reasons = missing_reasons(frame, self.columns)
            if reasons:
                if missing == "raise":
                    first = next(iter(reasons))
                    raise TemplateError(
                        f"{len(reasons)} row(s) have missing values, first at index {frame.label(first)!r} "
                        f"({reasons[first]}); fill them, or pass missing='skip' to leave those rows unanswered"
                    )
                skipped = reasons
        media_columns = {p.column for _, parts in self.media or () for p in parts if isinstance(p, Media)}
        for column in self.columns:
            problem = None if column in media_columns else frame.unusable(column)  # bytes are media there
            if problem is not None:
                raise TemplateError(problem)
        if self.media is not None:
            from .media_template import MediaPrompts, MediaSettings  # it builds on Prompts, above

            return MediaPrompts(frame, self.media, skipped, media or MediaSettings(), _render_part)
        return _FramePrompts(frame, self.parts, skipped)

    def _render_function(self, frame: Rows) -> Prompts:
        names = list(frame.columns)
        rows: list = []
        skipped: dict[int, str] = {}
        for i, record in enumerate(frame.records()):
            try:
                result = self.function(dict(zip(names, record)))
            except Exception as exc:
                raise TemplateError(
                    f"the template function failed on the row at index {frame.label(i)!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if result is None:
                skipped[i] = "the template function returned None"
                rows.append(None)
                continue
            rows.append(self._messages_from_result(result, frame, i))
        return _ListPrompts(rows, skipped)

    def _messages_from_result(self, result: Any, frame: Rows, i: int) -> Messages:
        if isinstance(result, str):
            messages = [{"role": "user", "content": result}]
        elif isinstance(result, list) and result and all(isinstance(m, dict) for m in result):
            messages = result
        else:
            raise TemplateError(
                f"the template function returned {type(result).__name__} for the row at index {frame.label(i)!r}; "
                "return a string, a list of {'role', 'content'} messages, or None to skip the row"
            )
        for m in messages:
            if m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
                raise TemplateError(f"the template function returned a bad message for index {frame.label(i)!r}: {m!r}")
        if self.system is not None and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": self.system}, *messages]
        if self.context is not None:
            messages = with_context(messages, self.context)
        return messages


def with_context(messages: list[dict], context: str) -> list[dict]:
    """The messages with context= as a user message of its own, after the leading system messages: the start
    every row shares, which the providers' prompt caches serve (Gemini's as an explicit cached content)."""
    at = next((i for i, m in enumerate(messages) if m.get("role") not in ("system", "developer")), len(messages))
    return [*messages[:at], {"role": "user", "content": context}, *messages[at:]]


def _is_parts(template: Any) -> bool:
    """A list of strings and media parts (one user message), as opposed to a list of chat messages."""
    return isinstance(template, (list, tuple)) and bool(template) and \
        all(isinstance(p, (str, Media)) for p in template) and any(isinstance(p, Media) for p in template)


def _parts(message: dict, columns: Sequence, positional_column: str | None) -> list:
    """A message's content as parts: each string a template, each Media as it is; media in user messages only."""
    content = message["content"]
    content = [content] if isinstance(content, str) else content
    parts: list = []
    for part in content:
        if not isinstance(part, (str, Media)):
            raise TemplateError(f"a message's content list holds strings and llmframe.image() / llmframe.document() "
                                f"parts, got {type(part).__name__}")
        if isinstance(part, Media) and part.column is None:
            if positional_column is None:
                raise TemplateError(f"llmframe.{part.kind}() without a column is a Series' values: on a DataFrame, "
                                    f"name the column, e.g. llmframe.{part.kind}({next(iter(columns), 'column')!r})")
            part = Media(part.kind, positional_column, part.detail)
        if isinstance(part, Media) and part.column not in columns:
            raise TemplateError(f"llmframe.{part.kind}({part.column!r}) names a column the frame does not have; "
                                f"columns are {sorted(map(str, columns))}")
        if isinstance(part, Media) and message["role"] != "user":
            raise TemplateError(f"media go in user messages, not in a {message['role']} message")
        parts.append(part if isinstance(part, Media) else _parse(part, columns, positional_column))
    return parts


def _render_part(text: _Text, cols: list[list], count: int) -> list[str]:
    """One message part rendered for a chunk of rows."""
    if not cols:
        return [text.render(())] * count
    fmt = text.positional.format
    return [fmt(*values) for values in zip(*cols)]
