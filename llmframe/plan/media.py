"""Images and documents in templates: the parts (llmframe.image, llmframe.document) and the references a row holds.

A cell becomes a MediaRef: what it is (sniffed from its bytes), a digest of its bytes (the cache key's, so the
same image under another name is a hit and a changed file a miss) and where its bytes are. Nothing here keeps
a base64 copy: providers read and encode a reference's bytes when its request is sent (providers/media.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import sqlite3
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from .. import constants

IMAGE, DOCUMENT = "image", "document"
_DETAILS = ("auto", "low", "high")
# The first bytes of each media type llmframe sends, and its MIME type; WEBP is checked apart (RIFF....WEBP).
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"))
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
DOCUMENT_TYPES = ("application/pdf",)
_HEAD = 16  # bytes enough to sniff every type above


class MediaError(ValueError):
    """One cell's media cannot be used (missing file, unknown type, too large): that row's error."""


@dataclass(frozen=True, slots=True)
class Media:
    """A template part: the column holding an image or a document (one, or a list of them, per row)."""

    kind: str  # IMAGE or DOCUMENT
    column: Any
    detail: str | None = None  # OpenAI's image detail: "auto", "low" or "high"; None: the provider's default


def image(column: Any = None, detail: str | None = None) -> Media:
    """A template part for the image in each row's `column` (bytes, a path, a URL or a PIL image; or a list).

    On a Series, image() with no column is the Series' own values.
    """
    if detail is not None and detail not in _DETAILS:
        raise ValueError(f"detail must be one of {_DETAILS} or None, got {detail!r}")
    return Media(IMAGE, column, detail)


def document(column: Any = None) -> Media:
    """A template part for the document (PDF) in each row's `column` (bytes, a path or a URL; or a list); on a
    Series, document() with no column is the Series' own values."""
    return Media(DOCUMENT, column)


@dataclass(slots=True)
class MediaRef:
    """One cell's media as a request carries it: its type and digest, and where its bytes are (never a copy)."""

    kind: str
    mime: str | None  # sniffed; None for a URL passed by reference (its server says)
    digest: str | None  # blake2b of the bytes; None for a URL passed by reference
    source: Any  # bytes, a path (str), a URL (str) or a PIL image
    origin: str  # "bytes", "path", "url", "pil"
    size: int  # bytes; 0 for a URL
    detail: str | None = None
    max_side: int | None = None  # downscale so the longer side is at most this many pixels (images)
    fetch: bool = False  # a URL: llmframe downloads it (fetch_urls=True) instead of passing it on
    problem: str | None = None  # why it cannot be sent (a file that broke after planning): its row fails

    def key(self) -> dict:
        """What of it goes into the cache key: the content's digest, not the path; the options that change it."""
        found = {"type": self.kind, "digest": self.digest} if self.digest else {"type": self.kind, "url": self.source}
        if self.detail is not None:
            found["detail"] = self.detail
        if self.max_side is not None and self.kind == IMAGE:
            found["max_side"] = self.max_side
        if self.fetch and self.origin == "url":
            found["fetch"] = True
        return found

    def key_json(self) -> str:
        """canonical_json(self.key()), spelled directly: a cached re-run makes one per row."""
        if self.detail is None and (self.max_side is None or self.kind != IMAGE) and self.digest:
            return f'{{"digest":"{self.digest}","type":"{self.kind}"}}'
        return json.dumps(self.key(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def url(self) -> str | None:
        """The URL a provider may take by reference, or None."""
        return self.source if self.origin == "url" and not self.fetch else None

    def __repr__(self) -> str:  # the estimate's sample prompts show it: never the bytes
        where = self.source if self.origin in ("path", "url") else f"{self.size} bytes"
        return f"<{self.kind} {self.mime or 'by URL'} {where}>"


def sniff(head: bytes) -> str | None:
    """The MIME type of media starting with these bytes, or None for a type llmframe does not send."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


class _DigestCache:
    """Digests of files by (device, inode, size, mtime, ctime): a re-run stats each file instead of hashing it.

    Oldest first out past `entries` (a re-run scans its files in order, where least-recently-used would evict
    as much); a hit takes no lock (a dict read is atomic), so a cached re-run pays a stat and a lookup a row.
    """

    def __init__(self, entries: int):
        self._entries = entries
        self._seen: OrderedDict[tuple, tuple[str, str | None, int]] = OrderedDict()  # popitem(last=False) is O(1)
        self._lock = threading.Lock()

    def get(self, path: str, kept: DigestFile | None = None) -> tuple[str, str | None, int]:
        """(digest, sniffed type, size) of the file; OSError if it cannot be read. kept: the digests on disk."""
        stat = os.stat(path)
        # The file itself (device and inode), as it is now: another name for it is a hit, a write a miss.
        key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        found = self._seen.get(key)
        if found is not None:
            return found
        found = kept.get(key) if kept is not None else None
        if found is None:
            found = _hash_file(path)
            if kept is not None:
                kept.add(key, found)
        with self._lock:
            seen = self._seen
            seen[key] = found
            while len(seen) > self._entries:
                seen.popitem(last=False)
        return found


class DigestFile:
    """File digests kept on disk beside the answer cache: a re-run in a new process stats its files, not hashes them.

    Best effort: a digest file that cannot be read or written is as if there were none (the files are hashed).
    """

    def __init__(self, path: str):
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._fresh: list[tuple] = []
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
            db = sqlite3.connect(self._path, timeout=constants.MEDIA_DIGEST_FILE_TIMEOUT_SECONDS,
                                 check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS digests (k TEXT PRIMARY KEY, digest TEXT, mime TEXT, size INTEGER)")
            self._db = db
        return self._db

    def get(self, key: tuple) -> tuple[str, str | None, int] | None:
        """The digest kept for this file identity, or None."""
        try:
            with self._lock:
                row = self._open().execute("SELECT digest, mime, size FROM digests WHERE k = ?",
                                           (":".join(map(str, key)),)).fetchone()
        except (sqlite3.Error, OSError):
            return None
        return None if row is None else (row[0], row[1], int(row[2]))

    def add(self, key: tuple, found: tuple[str, str | None, int]) -> None:
        """Keep a digest just made; written in batches (flush)."""
        self._fresh.append((":".join(map(str, key)), *found))
        if len(self._fresh) >= constants.MEDIA_RENDER_CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the digests made since the last flush."""
        fresh, self._fresh = self._fresh, []
        if not fresh:
            return
        try:
            with self._lock:
                db = self._open()
                db.execute("BEGIN")
                db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)", fresh)
                db.execute("COMMIT")
        except (sqlite3.Error, OSError):
            pass  # only a later re-run's speed depends on it


_DIGEST_FILES: dict[str, DigestFile] = {}


def digest_file(cache_dir: str) -> DigestFile:
    """The digest file of a cache directory, one per process."""
    path = os.path.join(str(cache_dir), constants.MEDIA_DIGEST_FILE)
    return _DIGEST_FILES.setdefault(path, DigestFile(path))


def _hash_file(path: str) -> tuple[str, str | None, int]:
    """(digest, sniffed type, size) of a file, read a block at a time: never the whole file in memory."""
    digest = hashlib.blake2b(digest_size=16)
    size, head = 0, b""
    with open(path, "rb") as f:
        while block := f.read(constants.MEDIA_READ_BLOCK_BYTES):
            if not size:
                head = block[:_HEAD]
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), sniff(head), size


DIGESTS = _DigestCache(constants.MEDIA_DIGEST_CACHE_ENTRIES)


def digest_bytes(data: bytes) -> str:
    """The digest a cache key holds for these bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _pil_image(value: Any) -> bool:
    """Whether value is a PIL image, without importing Pillow where nobody made one."""
    module = type(value).__module__ or ""
    return module.startswith("PIL.") and hasattr(value, "tobytes") and hasattr(value, "size")


def is_url(text: str) -> bool:
    """http(s)://, gs:// or data: text."""
    return text.startswith(("http://", "https://", "gs://", "data:"))


def reference(value: Any, kind: str, *, detail: str | None = None, max_side: int | None = None,
              fetch: bool = False, kept: DigestFile | None = None) -> MediaRef:
    """One cell's MediaRef; MediaError naming the problem (that row's error) when it cannot be used.

    Only the cell's own value is ever opened: a path is read because the column names it.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _checked(MediaRef(kind, sniff(data[:_HEAD]), digest_bytes(data), data, "bytes", len(data),
                                 detail, max_side))
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, str):
        if value.startswith("data:"):
            return reference(_data_url(value), kind, detail=detail, max_side=max_side)
        if is_url(value):
            return MediaRef(kind, None, None, value, "url", 0, detail, max_side, fetch)
        try:
            digest, mime, size = DIGESTS.get(value, kept)
        except OSError as exc:
            raise MediaError(f"cannot read {value!r}: {exc.strerror or exc}") from None
        return _checked(MediaRef(kind, mime, digest, value, "path", size, detail, max_side))
    if _pil_image(value):
        if kind != IMAGE:
            raise MediaError("a PIL image is an image: use llmframe.image() for its column")
        raw = value.tobytes()
        digest = hashlib.blake2b(f"{value.mode}:{value.size}:".encode(), digest_size=16)
        digest.update(raw)
        return MediaRef(kind, "image/png", digest.hexdigest(), value, "pil", len(raw), detail, max_side)
    raise TypeError(type(value).__name__)


def _data_url(url: str) -> bytes:
    """The bytes of a base64 data: URL (its declared type is not trusted: the bytes are sniffed)."""
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        raise MediaError("a data: URL must be base64 (data:<type>;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("a data: URL holds invalid base64") from None


def _checked(ref: MediaRef) -> MediaRef:
    """The ref, if its sniffed type is one its part sends."""
    allowed = IMAGE_TYPES if ref.kind == IMAGE else DOCUMENT_TYPES
    if ref.mime is None:
        what = "empty" if not ref.size else "not PNG, JPEG, WEBP, GIF or PDF (by its first bytes)"
        raise MediaError(f"{_where(ref)} is {what}")
    if ref.mime not in allowed:
        other = "document" if ref.kind == IMAGE else "image"
        raise MediaError(f"{_where(ref)} is {ref.mime}, not an {ref.kind}: use llmframe.{other}() for its column"
                         if ref.kind == IMAGE or ref.mime in IMAGE_TYPES else f"{_where(ref)} is {ref.mime}")
    return ref


def _where(ref: MediaRef) -> str:
    return repr(ref.source) if ref.origin == "path" else f"the {ref.origin} value"


def url_scheme(url: str) -> str:
    """http, https or gs."""
    return urllib.parse.urlsplit(url).scheme.lower()
