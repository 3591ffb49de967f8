"""Templates with media parts: each row's messages as lists of text parts and MediaRefs, rendered a chunk at a time.

A row whose media cannot be used (a missing file, an unknown type) is skipped with its reason while the plan
keys its rows; when every row fails that way the plan raises, before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import constants
from ..config import default_directory
from ..errors import ConfigError, TemplateError
from .media import (DIGESTS, DOCUMENT_TYPES, IMAGE, IMAGE_TYPES, Media, MediaError, MediaRef, digest_file, reference,
                    url_scheme)
from .rows import Rows, containers_as_json
from .template import Prompts

_LISTS = (list, tuple, np.ndarray)
_NOT_PATHS = ("http://", "https://", "gs://", "data:")  # a str cell starting so is a URL (plan/media.py's is_url)
_json_string = json.encoder.encode_basestring  # as json.dumps(str, ensure_ascii=False) spells a string


@dataclass(frozen=True)
class MediaSettings:
    """What a run does with its media, and what its provider takes (its class's media_urls, media_max_bytes)."""

    provider: str = "the provider"
    max_side: int | None = None  # max_image_side=
    fetch: bool = False  # fetch_urls=
    urls: frozenset = frozenset()  # (kind, scheme) the provider takes by reference
    max_bytes: dict = field(default_factory=dict)  # kind -> the most bytes the provider takes of one
    kinds: frozenset = frozenset({"image", "document"})  # what the provider takes at all
    keep_digests: bool = False  # file digests kept between processes, in the cache directory (not with cache=False)
    digest_dir: str | None = None  # that directory; None: the default one
    rules: str = ""  # the provider's name, whose rules count its media's tokens (cost/media.py)


def media_settings(checked: dict, kind: Any, cache_dir: str | None = None) -> MediaSettings:
    """A run's MediaSettings: its options (max_image_side=, fetch_urls=), its provider's capabilities, and where
    file digests are kept (the cache directory, unless cache=False)."""
    return MediaSettings(f"the {kind.name} provider", checked.get("max_image_side"), bool(checked.get("fetch_urls")),
                         frozenset(getattr(kind, "media_urls", ())), dict(getattr(kind, "media_max_bytes", {})),
                         frozenset(getattr(kind, "media_kinds", ("image", "document"))),
                         checked.get("cache") is not False, cache_dir, kind.name)


def has_media(messages: list[dict]) -> bool:
    """Whether any message's content is a list of parts."""
    return any(isinstance(m.get("content"), (list, tuple)) for m in messages)


class MediaPrompts(Prompts):
    """Templates with media parts: a row is a tuple of contents, each a list of text parts and MediaRefs."""

    media = True  # estimates count its media's tokens (cost/media.py)

    def __init__(self, rows: Rows, messages: list[tuple[str, list]], skipped: dict[int, str],
                 settings: MediaSettings, render_text: Callable):
        super().__init__(len(rows), skipped)
        self.frame = rows
        self.message_parts = messages  # (role, [text template | Media, ...]); not "parts": that is text templates' (plan/prefix.py)
        self.roles = tuple(role for role, _ in messages)
        self.settings = settings
        self._render_text = render_text  # (text template, its columns' values, count) -> the rendered texts
        self._planning = True  # until settled: a row whose media fail is skipped, afterwards its request fails
        self._kept = digest_file(settings.digest_dir or default_directory()) if settings.keep_digests else None
        self._failed: dict[int, str] = {}

    def chunks(self, size: int = constants.MEDIA_RENDER_CHUNK_ROWS):
        """As Prompts.chunks, smaller: a chunk's cells may be copies of its media's bytes (Arrow binary columns);
        and a re-run's keying measured faster at 512 rows a chunk than at 16,384 (fewer live objects a chunk)."""
        return super().chunks(size)

    def rows_at(self, positions: Sequence[int]) -> list:
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):
            return []
        count = len(positions)
        contents: list[list[list]] = []  # per message, per row: the parts
        broken: dict[int, str] = {}
        for _, parts in self.message_parts:
            per_row: list[list] = [[] for _ in range(count)]
            for part in parts:
                if isinstance(part, Media):
                    self._media(part, positions, per_row, broken)
                    continue
                values = [containers_as_json(self.frame, c, self.frame.values(c, positions)) if plain
                          else self.frame.values(c, positions) for c, plain in zip(part.columns, part.plain)]
                try:
                    texts = self._render_text(part, values, count)
                except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
                    raise TemplateError(f"the template does not fit the frame: {type(exc).__name__}: {exc}") from None
                for k, text in enumerate(texts):
                    if text:  # the APIs refuse empty text blocks
                        per_row[k].append({"type": "text", "text": text})
            contents.append(per_row)
        rows = list(zip(*contents))
        for k, reason in broken.items():
            self._failed[int(positions[k])] = reason
            self.skip(int(positions[k]), reason)
            rows[k] = None
        return rows

    def _media(self, part: Media, positions: np.ndarray, per_row: list[list], broken: dict[int, str]) -> None:
        """Each row's MediaRefs of one part, appended to its parts; rows whose media fail go in broken."""
        settings = self.settings
        fast = self._fast_path(part)
        for k, value in enumerate(self.frame.values(part.column, positions)):
            if fast is not None and type(value) is str and not value.startswith(_NOT_PATHS):
                ref = fast(value)  # a file path as a re-run meets it: its digest by stat, nothing to check
                if ref is not None:
                    per_row[k].append(ref)
                    continue
            values = list(value) if isinstance(value, _LISTS) else [value]
            for one in values:
                try:
                    ref = reference(one, part.kind, detail=part.detail, max_side=settings.max_side,
                                    fetch=settings.fetch, kept=self._kept)
                except TypeError:
                    raise TemplateError(
                        f"column {part.column!r} holds a {type(one).__name__} at index "
                        f"{self.frame.label(int(positions[k]))!r}: llmframe.{part.kind}() takes bytes, a file path, "
                        "an http(s)://, gs:// or data: URL" + (", a PIL image" if part.kind == IMAGE else "")
                        + ", or a list of them") from None
                except MediaError as exc:
                    if not self._planning:  # keyed and sent before: the file changed since; its row fails
                        ref = MediaRef(part.kind, None, None, one, "path", 0, problem=str(exc))
                    else:
                        broken.setdefault(k, f"{part.kind} in column {part.column!r}: {exc}")
                        continue
                self._check(ref, part, int(positions[k]))
                per_row[k].append(ref)

    def _fast_path(self, part: Media) -> Callable[[str], MediaRef | None] | None:
        """path -> its MediaRef where the file is of a type the part sends and within the provider's size limit;
        None for anything else, which takes reference() and _check's way (and their errors). None where the
        provider does not take the part's kind at all."""
        settings = self.settings
        if part.kind not in settings.kinds:
            return None
        allowed = IMAGE_TYPES if part.kind == IMAGE else DOCUMENT_TYPES
        limit = settings.max_bytes.get(part.kind) or 0
        if part.kind == IMAGE and settings.max_side:
            limit = 0  # downscaled before sending: any size goes
        kind, detail, max_side, kept, digest = part.kind, part.detail, settings.max_side, self._kept, DIGESTS.get

        def ref(path: str) -> MediaRef | None:
            try:
                found, mime, size = digest(path, kept)
            except OSError:
                return None
            if mime not in allowed or (limit and size > limit):
                return None
            return MediaRef(kind, mime, found, path, "path", size, detail, max_side)

        return ref

    def _check(self, ref: MediaRef, part: Media, i: int) -> None:
        """ConfigError, before anything is sent, for media the provider cannot take as the run would send them."""
        settings = self.settings

        def where() -> str:  # spelled only for an error
            return f"column {part.column!r}, index {self.frame.label(i)!r}"

        if ref.kind not in settings.kinds:
            takes = f"only {', '.join(sorted(settings.kinds))}s" if settings.kinds else "no images or documents yet"
            raise ConfigError(f"{settings.provider} takes {takes}, not the {ref.kind} at {where()}")
        if ref.url is not None and (ref.kind, url_scheme(ref.url)) not in settings.urls:
            scheme = url_scheme(ref.url)
            fix = "download it first" if scheme == "gs" else "pass fetch_urls=True (llmframe downloads it)"
            raise ConfigError(f"{settings.provider} cannot take an {ref.kind} by {scheme}:// URL ({where()}): {fix}")
        limit = settings.max_bytes.get(ref.kind)
        if limit and ref.size > limit and not (ref.kind == IMAGE and settings.max_side):
            fix = "pass max_image_side= (e.g. 2048) to downscale it" if ref.kind == IMAGE else "split it"
            raise ConfigError(f"the {ref.kind} at {where()} has {ref.size:,} bytes, more than {settings.provider} "
                              f"takes ({limit:,}): {fix}")

    def settled(self) -> None:
        """The rows are keyed: TemplateError if every row's media failed; later failures fail their requests."""
        self._planning = False
        if self._kept is not None:
            self._kept.flush()
        if self._failed and len(self._failed) == self.size - sum(1 for i in self.skipped if i not in self._failed):
            first = next(iter(self._failed.values()))
            raise TemplateError(f"no row's media could be used ({len(self._failed)} rows), e.g. {first}; "
                                "check the column's values (paths relative to the working directory)")

    def messages_of(self, row) -> list[dict]:
        return [{"role": role, "content": _content(content)} for role, content in zip(self.roles, row)]

    def json_of(self, rows: list) -> list[str]:
        roles = [_json_string(role) for role in self.roles]
        return ["null" if row is None else "[" + ",".join(
            f'{{"content":{_content_json(content)},"role":{role}}}' for role, content in zip(roles, row)) + "]"
            for row in rows]

    def chars_of(self, row) -> int:
        if row is None:
            return 0
        return sum(len(p["text"]) for content in row for p in content if isinstance(p, dict))

    def tokens_of(self, row) -> int:
        """A row's input tokens before sending: its text / 4, its media by the provider's rules (max_prompt_tokens=)."""
        from ..cost.media import prompt_tokens  # reads each image's header: only where max_prompt_tokens= is set

        return 0 if row is None else prompt_tokens(self.settings.rules, self.messages_of(row))


def _content(parts: list) -> str | list:
    """A message's content: its text where it has no media (a system prompt stays a string), else its parts."""
    if all(isinstance(p, dict) for p in parts):
        return "".join(p["text"] for p in parts)
    return list(parts)


def _content_json(parts: list) -> str:
    """canonical_json of a message's content (_content), each MediaRef spelled by its key (digest, options)."""
    spelled, media = [], False
    for p in parts:  # one pass: a cached re-run spells every row's
        if type(p) is dict:
            spelled.append(f'{{"text":{_json_string(p["text"])},"type":"text"}}')
        else:
            spelled.append(p.key_json())
            media = True
    if not media:
        return _json_string("".join(p["text"] for p in parts))
    return "[" + ",".join(spelled) + "]"


def refs(messages: list[dict]) -> list[MediaRef]:
    """The MediaRefs of a request's messages, in order."""
    return [p for m in messages if isinstance(m.get("content"), (list, tuple)) for p in m["content"]
            if isinstance(p, MediaRef)]
