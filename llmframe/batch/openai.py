"""OpenAI's Batch API: a JSONL file of /v1/chat/completions (or, for df.llm.embed, /v1/embeddings) requests,
uploaded through the Files API."""

from __future__ import annotations

import json

import openai

from .. import constants
from ..plan.build import input_text
from ..plan.request import Response
from ..providers import embeddings, media, replies, responses
from .base import Adapter, LineBuilder, Status, error_text, json_lines, object_lines, read_line

ENDPOINT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


class OpenAIBatches(Adapter):
    """client.files.create(purpose="batch") + client.batches.create/retrieve/cancel + client.files.content."""

    name = "openai"
    endpoint = ENDPOINT

    def line_builder(self, params: dict) -> LineBuilder:
        if constants.EMBEDDING_KEY in params:
            return self._embedding_lines(params[constants.EMBEDDING_KEY])
        # Everything but the custom id and the messages is the same on every line: format it once.
        head = '{"custom_id":"'
        model = json.dumps(self.provider.model)
        middle = f'","method":"POST","url":"{self.endpoint}","body":{{"model":{model},"messages":'
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        # In the caller's key order, not sorted: a model writes a schema's fields in the order it is given them.
        params = responses.chat_params(params)
        tail = ("," + dumps(params)[1:] if params else "}") + "}"

        def line(key: str, messages: list[dict]) -> str:
            if media.has_media(messages):  # images and PDFs: data URLs in the request
                messages = media.messages_now(messages, media.openai_part)
            return head + key + middle + dumps(messages) + tail

        return line

    def _embedding_lines(self, settings: dict) -> LineBuilder:
        """One /v1/embeddings line per row: its input, vectors asked in base64 (exact, a third of JSON's size)."""
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        middle = (f'","method":"POST","url":"{EMBEDDINGS}","body":{{"model":{dumps(self.provider.model)},'
                  '"encoding_format":"base64",')
        if "dimensions" in settings:
            middle += f'"dimensions":{int(settings["dimensions"])},'
        limit = self.provider.embedding_input_tokens if settings.get("truncate") else None
        encoding = self.provider.tiktoken_encoding() if limit is not None else None

        def line(key: str, messages: list[dict]) -> str:
            return '{"custom_id":"' + key + middle + '"input":' + dumps(embeddings.cut([input_text(messages)], limit,
                                                                                      encoding)[0]) + "}}"

        return line

    async def create(self, uid: str, lines: list[str]) -> str:
        data = ("\n".join(lines) + "\n").encode()
        with self.creating(), self.provider.stainless_errors(openai):
            file = await self.client.files.create(file=(f"{uid}.jsonl", data, "application/jsonl"), purpose="batch")
            batch = await self.client.batches.create(
                input_file_id=file.id,
                endpoint=EMBEDDINGS if lines and f'"url":"{EMBEDDINGS}"' in lines[0] else self.endpoint,
                completion_window=constants.BATCH_COMPLETION_WINDOW,
                metadata={"llmframe_chunk": uid},
            )
        return batch.id

    async def find(self, uid: str, since: float) -> str | None:
        with self.creating(), self.provider.stainless_errors(openai):
            async for batch in self.client.batches.list(limit=100):  # newest first
                if (batch.metadata or {}).get("llmframe_chunk") == uid:
                    return batch.id
                if batch.created_at < since - constants.BATCH_FIND_SLACK_SECONDS:
                    break
        return None

    async def poll(self, batch_id: str) -> Status:
        with self.provider.stainless_errors(openai):
            batch = await self.client.batches.retrieve(batch_id)
        counts = batch.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        error = None
        if batch.status == "failed":
            found = batch.errors.data if batch.errors and batch.errors.data else []
            error = "; ".join(f"{e.code}: {e.message}" for e in found) or "the batch failed"
        return Status(batch.status, batch.status in _ENDED, done, error)

    async def results(self, batch_id: str) -> dict[str, Response]:
        with self.provider.stainless_errors(openai):
            batch = await self.client.batches.retrieve(batch_id)
            files = [f for f in (batch.output_file_id, batch.error_file_id) if f]
            texts = [(await self.client.files.content(f)).content for f in files]
        found: dict[str, Response] = {}
        for text in texts:
            found.update(self.parse(text))
        return found

    def parse(self, data: bytes) -> dict[str, Response]:
        """An output or error file's answers, by custom id."""
        return parse_results(data)

    async def cancel(self, batch_id: str) -> None:
        with self.provider.stainless_errors(openai):
            await self.client.batches.cancel(batch_id)


class ResponsesBatches(OpenAIBatches):
    """The same Batch API with /v1/responses lines (api="responses"): each body as the online request's."""

    endpoint = "/v1/responses"

    def line_builder(self, params: dict) -> LineBuilder:
        model, url = self.provider.model, self.endpoint

        def render(key: str, messages: list[dict]) -> dict:
            if media.has_media(messages):  # images and PDFs: data URLs in the request, as online
                messages = media.messages_now(messages, media.responses_part)
            return {"custom_id": key, "method": "POST", "url": url, "body": responses.body(model, messages, params)}

        return object_lines(render)

    def parse(self, data: bytes) -> dict[str, Response]:
        return _parse_lines(data, responses.read, lambda body: body.get("output") is not None)


def parse_results(data: bytes | str) -> dict[str, Response]:
    """Output or error file lines -> answers and per-request errors, by custom id."""
    fast = _parse_answers_arrow(data)
    return fast if fast is not None else _parse_lines(data)


def _parse_answers_arrow(data: bytes | str) -> dict[str, Response] | None:
    """An output file of successful answers, parsed by pyarrow's multithreaded JSON reader (several times
    faster than json at a million lines); None where pyarrow is missing or the file holds anything else."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.json as pj
    except ImportError:
        return None
    raw = data.encode() if isinstance(data, str) else data
    if not raw.strip():
        return {}
    try:
        table = pj.read_json(pa.BufferReader(raw))
        response = table.column("response")
        body = pc.struct_field(response, "body")
        first = pc.list_element(pc.struct_field(body, "choices"), 0)
        usage = pc.struct_field(body, "usage")
        columns = [
            table.column("custom_id"),
            pc.struct_field(pc.struct_field(first, "message"), "content"),
            pc.struct_field(usage, "prompt_tokens"),
            pc.struct_field(usage, "completion_tokens"),
            pc.struct_field(first, "finish_reason"),
        ]
        statuses = pc.struct_field(response, "status_code")
        if pc.any(pc.not_equal(statuses, 200)).as_py() or statuses.null_count or columns[1].null_count:
            return None  # errors or odd lines: the line-by-line parser says what each one is
        kinds = (pa.types.is_string, pa.types.is_string, pa.types.is_integer, pa.types.is_integer,
                 lambda t: pa.types.is_string(t) or pa.types.is_null(t))
        if not all(ok(column.type) for ok, column in zip(kinds, columns)):
            return None  # a field of the wrong type somewhere: each line is read and checked on its own
        if _carries(first, "logprobs") or _cached(usage):
            return None  # log-probabilities (a cascade's confidence), cached tokens: the line reader reads them
    except (pa.ArrowException, KeyError, IndexError, TypeError, ValueError):
        return None
    ids, texts, prompt, completion, finish = (c.to_pylist() for c in columns)
    return {key: Response(text, p or 0, c or 0, f, batch=True)
            for key, text, p, c, f in zip(ids, texts, prompt, completion, finish)}


def _carries(column, name: str) -> bool:
    """True where some line has a non-null `name` field in this struct column."""
    names = [column.type.field(i).name for i in range(column.type.num_fields)]
    if name not in names:
        return False
    import pyarrow.compute as pc

    return pc.struct_field(column, name).null_count < len(column)


def _cached(usage) -> bool:
    """True where some line's usage.prompt_tokens_details.cached_tokens is above 0 (OpenAI sends 0 in every line)."""
    import pyarrow.compute as pc

    if not _carries(usage, "prompt_tokens_details"):
        return False
    details = pc.struct_field(usage, "prompt_tokens_details")
    if not _carries(details, "cached_tokens"):
        return False
    return bool(pc.max(pc.struct_field(details, "cached_tokens")).as_py() or 0)


def _parse_lines(data: bytes | str, read=replies.openai, answered=lambda body: bool(body.get("choices"))
                 ) -> dict[str, Response]:
    """Each line's answer (read: the reply reader of the batch's endpoint) or its error, by custom id."""
    found: dict[str, Response] = {}
    for line in json_lines(data):
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            continue  # not one of our requests: its row stays unanswered, and says so
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        body = response.get("body") or {}
        if response.get("status_code") == 200 and isinstance(body, dict) and answered(body):
            found[line["custom_id"]] = read_line(lambda: read(body, None))
        elif response.get("status_code") == 200 and isinstance(body, dict) and "data" in body:
            found[line["custom_id"]] = read_line(lambda: _embedded(body))
        else:
            problem = line.get("error") or body or "no answer"
            found[line["custom_id"]] = Response.failure(error_text(problem, response.get("status_code")))
    return found


def _embedded(body: dict) -> Response:
    """One embedding line's answer: its vector (the cache keeps it in binary, plan.vector_value)."""
    got = embeddings.openai_reply(body, 1, None)
    return Response(None, got.input_tokens, 0, None, batch=True, vector=got.vectors[0])


class AzureBatches(OpenAIBatches):
    """Azure OpenAI's Batch API: OpenAI's, through the AzureOpenAI client, each line naming the deployment."""

    endpoint = "/chat/completions"


class AzureResponsesBatches(ResponsesBatches):
    """Azure's Batch API with Responses API lines (api="responses")."""

    endpoint = "/responses"
