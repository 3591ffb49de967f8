"""Large media of Gemini batch jobs: uploaded through the Files API before each batch is created, named by URI in
its lines, deleted once the batch has ended.

A line is rendered before its batch exists (batch/runner.py renders a chunk, then creates it), so it names each
large media by a placeholder; create() uploads the distinct ones (once per distinct file and batch, a few at a
time, each file's bytes read only then) and writes their URIs in. Each batch's files are its own, named
"<batch uid>/<digest>": deleting them when that batch ends never pulls a file from under another batch, and a
batch that another process collects (a job picked up later) finds its files by that name.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from google.genai import types

from .. import constants
from ..errors import ProviderError
from ..plan.media import IMAGE, MediaRef
from ..plan.media_template import refs
from ..providers import media
from ..providers.gemini import media_part

_MARK = "@llmframe-file:"
_URI = re.compile(r'"file_uri":"@llmframe-file:(\d+)"')
_MIME = re.compile(r'"mime_type":"@llmframe-mime:(\d+)"')


def too_large(messages: list[dict]) -> bool:
    """Whether a request's media pass Gemini's inline limit (as online: providers/gemini.py)."""
    return sum(ref.size for ref in refs(messages)) > constants.GEMINI_INLINE_MAX_BYTES


class BatchFiles:
    """One job's large media: placeholders while its lines are rendered, files while each batch runs."""

    def __init__(self, provider: Any):
        self.provider = provider  # the GeminiProvider: upload_file, delete_file, its client
        self._refs: list[MediaRef] = []  # placeholder n -> its media (references, never bytes)
        self._numbers: dict[tuple, int] = {}
        self._made: dict[str, dict[int, tuple[Any, str]]] = {}  # batch uid -> n -> (its File, its MIME type)
        self._inputs: dict[str, list[str]] = {}  # batch uid -> its other files (the JSONL of its requests)
        self._ended: set[str] = set()

    def placeholders(self, messages: list[dict]) -> list[dict]:
        """The messages with each MediaRef (a gs:// URL aside) as a fileData part naming a placeholder."""
        def part(ref: MediaRef) -> types.Part:
            if ref.url is not None:
                return media_part(ref, None)
            if ref.problem is not None:  # its file broke after planning: this row's error, as inline
                raise ProviderError(ref.problem, retryable=False, connected=False)
            same = (ref.kind, ref.digest, ref.max_side if ref.kind == IMAGE else None)
            n = self._numbers.setdefault(same, len(self._refs))
            if n == len(self._refs):
                self._refs.append(ref)
            return types.Part.from_uri(file_uri=f"{_MARK}{n}", mime_type=f"@llmframe-mime:{n}")

        return [{**m, "content": [part(p) if isinstance(p, MediaRef) else p for p in m["content"]]}
                if isinstance(m.get("content"), list) else m for m in messages]

    async def resolve(self, uid: str, lines: list[str]) -> list[str]:
        """The lines with their placeholders' files uploaded (those of an earlier try of this batch kept)."""
        made = self._made.setdefault(uid, {})  # also where there are none: this process knows the batch's files
        marked = [k for k, line in enumerate(lines) if _MARK in line]
        if not marked:
            return lines
        wanted = sorted({int(n) for k in marked for n in _URI.findall(lines[k])} - set(made))
        gate = asyncio.Semaphore(constants.GEMINI_BATCH_UPLOAD_CONCURRENCY)

        async def upload(n: int) -> None:
            async with gate:  # a few files' bytes in memory at once
                ref = self._refs[n]
                data, mime = await media.load(ref)
                made[n] = (await self.provider.upload_file(data, mime, f"{uid}/{ref.digest}"), mime)

        await asyncio.gather(*map(upload, wanted))
        out = list(lines)
        for k in marked:
            line = _URI.sub(lambda m: f'"file_uri":"{made[int(m[1])][0].uri}"', lines[k])
            out[k] = _MIME.sub(lambda m: f'"mime_type":"{made[int(m[1])][1]}"', line)
        return out

    def keep(self, uid: str, name: str) -> None:
        """Another file of the batch (its uploaded requests), deleted with its media."""
        self._inputs.setdefault(uid, []).append(name)

    async def ended(self, uid: str) -> None:
        """The batch ended (succeeded, failed, cancelled or expired), or was refused: nothing reads its files."""
        if uid in self._ended:
            return
        self._ended.add(uid)
        if uid in self._made or uid in self._inputs:
            names = [file.name for file, _mime in self._made.pop(uid, {}).values()] + self._inputs.pop(uid, [])
        else:  # made by another process: found by their names
            names = await self._listed(uid)
        for name in names:
            await self.provider.delete_file(name)

    async def _listed(self, uid: str) -> list[str]:
        """The names of the files of the batch uid, by their display names; none where they cannot be listed."""
        names = []
        with contextlib.suppress(Exception):  # best effort: the files expire in 48 hours anyway
            pager = await self.provider.client.aio.files.list(config={"page_size": constants.GEMINI_FILES_PAGE})
            async for file in pager:
                if file.display_name == uid or (file.display_name or "").startswith(uid + "/"):
                    names.append(file.name)
        return names
