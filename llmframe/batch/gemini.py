"""Gemini's Batch API through google-genai: inline requests for small jobs, an uploaded JSONL file for large ones
(and for embedding jobs, batch/gemini_embed.py)."""

from __future__ import annotations

import io
import json
import re

from google.genai import errors as genai_errors

from .. import constants
from ..providers import media, replies
from ..providers.gemini import candidate_text, finish_reason, media_part, to_contents
from ..plan.request import Response
from ..errors import ConfigError, ProviderError
from . import gemini_embed
from .base import Adapter, LineBuilder, Status, error_text, json_lines, read_line
from .gemini_files import BatchFiles, too_large

_ENDED = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})
# llmframe's parameter names -> generationConfig's (REST, camelCase); others are camel-cased as they are.
_RENAMED = {"max_tokens": "maxOutputTokens", "stop": "stopSequences"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class GeminiBatches(Adapter):
    """client.aio.batches.create/get/cancel, client.aio.files.upload/download."""

    name = "gemini"
    not_found = ("no model by that name, or this server has no batch API (most OpenAI-compatible servers serve only "
                 "the online one); check the model, or use mode='online'")

    def __init__(self, provider):
        super().__init__(provider)
        self.files = BatchFiles(provider)  # media past the inline limit, uploaded before their batch

    def line_builder(self, params: dict) -> LineBuilder:
        if constants.EMBEDDING_KEY in params:  # df.llm.embed: embedding requests (batch/gemini_embed.py)
            return gemini_embed.line_builder(self.provider, params[constants.EMBEDDING_KEY])
        # context= goes inline in a batch job's lines (a cached content would have to outlive the job)
        config = {_RENAMED.get(k) or _camel(k): v for k, v in params.items() if k != constants.GEMINI_CONTEXT_PARAM}
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

        def line(key: str, messages: list[dict]) -> str:
            if media.has_media(messages):  # images and PDFs inline, base64 in the JSON line; past the limit, files
                if too_large(messages):
                    messages = self.files.placeholders(messages)
                system, contents = to_contents(media.messages_now(messages, media_part))
                request: dict = {"contents": [c.model_dump(exclude_none=True, mode="json") for c in contents]}
            else:
                system, contents = to_contents(messages)
                request = {"contents": [c.model_dump(exclude_none=True) for c in contents]}
            if system is not None:
                request["systemInstruction"] = {"parts": [{"text": system}]}
            if config:
                request["generationConfig"] = config
            return dumps({"key": key, "request": request})

        return line

    async def create(self, uid: str, lines: list[str]) -> str:
        """Upload the batch's large media (and, past the inline size, its requests as a JSONL file), then create it."""
        try:
            with self.creating():  # a 404 here: the server has no batch API
                try:
                    if lines and gemini_embed.is_embedding(lines[0]):  # df.llm.embed's job: batch/gemini_embed.py
                        return await gemini_embed.create(self, uid, await self.upload_lines(uid, lines))
                    lines = await self.files.resolve(uid, lines)
                    if sum(len(line) for line in lines) < constants.GEMINI_INLINE_BYTES:
                        src = [_inline(json.loads(line)) for line in lines]
                    else:
                        src = await self.upload_lines(uid, lines)
                    job = await self.client.aio.batches.create(model=self.provider.model, src=src,
                                                               config={"display_name": uid})
                except genai_errors.APIError as exc:
                    raise self.provider.api_error(exc) from None
        except (ConfigError, ProviderError) as exc:
            if isinstance(exc, ConfigError) or not exc.retryable:  # refused: nothing was created to read them
                await self.files.ended(uid)
            raise  # a passing failure keeps them: the batch may exist after all, or the next try reuses them
        return job.name

    async def upload_lines(self, uid: str, lines: list[str]) -> str:
        """The batch's requests as an uploaded JSONL file, deleted with the batch's media once it ended; its name."""
        data = ("\n".join(lines) + "\n").encode()
        file = await self.client.aio.files.upload(file=io.BytesIO(data),
                                                  config={"mime_type": "jsonl", "display_name": uid})
        self.files.keep(uid, file.name)
        return file.name

    async def find(self, uid: str, since: float) -> str | None:
        with self.creating():
            try:
                pager = await self.client.aio.batches.list(config={"page_size": 100})
                oldest = since - constants.BATCH_FIND_SLACK_SECONDS
                async for job in pager:  # newest first
                    if job.display_name == uid:
                        return job.name
                    if job.create_time is not None and job.create_time.timestamp() < oldest:
                        break
            except genai_errors.APIError as exc:
                raise self.provider.api_error(exc) from None
        return None

    async def _get(self, batch_id: str):
        try:
            return await self.client.aio.batches.get(name=batch_id)
        except genai_errors.APIError as exc:
            raise self.provider.api_error(exc) from None

    async def poll(self, batch_id: str) -> Status:
        job = await self._get(batch_id)
        state = getattr(job.state, "value", str(job.state))
        error = None
        if state == "JOB_STATE_FAILED":
            error = error_text(job.error.model_dump(exclude_none=True)) if job.error else "the batch failed"
        if state in _ENDED and job.display_name:
            await self.files.ended(job.display_name)  # its uploaded media and requests are read no more
        return Status(state, state in _ENDED, 0, error)  # the Gemini API reports no per-request progress

    async def results(self, batch_id: str) -> dict[str, Response]:
        job = await self._get(batch_id)
        dest = job.dest
        if dest is None:
            return {}
        if dest.file_name:
            try:
                data = await self.client.aio.files.download(file=dest.file_name)
            except genai_errors.APIError as exc:
                raise self.provider.api_error(exc) from None
            return parse_results(data)
        found: dict[str, Response] = {}
        for item in dest.inlined_responses or []:
            key = (item.metadata or {}).get("key")
            if key is None:
                continue
            if item.error is not None or item.response is None:
                error = item.error.model_dump(exclude_none=True) if item.error is not None else "no answer"
                found[key] = Response.failure(error_text(error))
                continue
            response = item.response
            candidate = (response.candidates or [None])[0]
            usage = response.usage_metadata
            found[key] = Response(
                candidate_text(candidate) if candidate is not None else "",
                (usage.prompt_token_count or 0) if usage else 0,
                (usage.candidates_token_count or 0) if usage else 0,
                finish_reason(candidate.finish_reason) if candidate is not None else None,
                batch=True,
            ) if candidate is not None else Response.failure("the server returned no candidates")
        return found

    async def cancel(self, batch_id: str) -> None:
        try:
            await self.client.aio.batches.cancel(name=batch_id)
        except genai_errors.APIError as exc:
            raise self.provider.api_error(exc) from None


def _inline(line: dict) -> dict:
    """A file line ({"key", "request"} in REST shape) as the SDK's InlinedRequest (snake_case config)."""
    request = line["request"]
    config = {_snake(k): v for k, v in (request.get("generationConfig") or {}).items()}
    if "systemInstruction" in request:
        config["system_instruction"] = "".join(p.get("text", "") for p in request["systemInstruction"]["parts"])
    return {"contents": request["contents"], "config": config or None, "metadata": {"key": line["key"]}}


def parse_results(data: bytes | str) -> dict[str, Response]:
    """Response-file lines ({"key", "response"} or {"key", "error"}) -> answers and errors, by key."""
    found: dict[str, Response] = {}
    for line in json_lines(data):
        if not isinstance(line, dict) or not isinstance(line.get("key"), str):
            continue  # not one of our requests: its row stays unanswered, and says so
        response = line.get("response")
        if isinstance(response, dict) and "embedding" in response:  # an embedding job's line
            found[line["key"]] = read_line(lambda: gemini_embed.answer(response))
            continue
        candidates = response.get("candidates") if isinstance(response, dict) else None
        if not candidates:
            found[line["key"]] = Response.failure(error_text(line.get("error") or "the server returned no candidates"))
            continue
        found[line["key"]] = read_line(lambda: _answer(response, candidates))
    return found


def _answer(response: dict, candidates: list) -> Response:
    """One generateContent response of a batch: its first candidate's text, tokens and finish reason."""
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    usage = response.get("usageMetadata") or {}
    text = "".join(p.get("text", "") for p in parts if p.get("text") and not p.get("thought"))
    counts = [usage.get("promptTokenCount") or 0, usage.get("candidatesTokenCount") or 0]
    if not isinstance(text, str) or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**26
                                            for n in counts):
        raise TypeError(f"a text or token count of the wrong type ({text!r:.40}, {counts})")
    return Response(replies.unicode(text), counts[0], counts[1], finish_reason(candidate.get("finishReason")))
