"""Mistral's batch API: a JSONL file of chat requests (client.files.upload, purpose "batch") and a batch job
(client.batch.jobs.create/get/list/cancel); the results come back as output and error files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import constants
from ..errors import ProviderError, quota_spent, redact
from ..plan.request import Response
from ..providers import replies
from ..providers.mistral import finish_reason
from .base import Adapter, LineBuilder, Status, error_text, json_lines, object_lines, read_line

ENDPOINT = "/v1/chat/completions"
_ENDED = frozenset({"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"})


class MistralBatches(Adapter):
    """Mistral's batch jobs through the mistralai SDK the provider configured."""

    name = "mistral"

    def line_builder(self, params: dict) -> LineBuilder:
        body = self.provider.request_params(params)  # the model is the job's, not each line's
        return object_lines(lambda key, messages: {"custom_id": key, "body": {"messages": messages, **body}})

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The SDK's errors as ProviderError: an HTTP status (retryable per its code), or no connection."""
        from mistralai.client import errors

        try:
            yield
        except errors.MistralError as exc:
            raise ProviderError(redact(f"HTTP {exc.status_code}: {exc.body or exc.message}", *self.provider.secrets),
                                status=exc.status_code, headers=exc.headers,
                                quota=quota_spent(exc.status_code, exc.body)) from None
        except errors.NoResponseError as exc:
            raise ProviderError(f"connection error: {exc}", retryable=True) from None

    async def create(self, uid: str, lines: list[str]) -> str:
        data = ("\n".join(lines) + "\n").encode()
        with self.creating(), self._errors():
            file = await self.client.files.upload_async(file={"file_name": f"{uid}.jsonl", "content": data},
                                                        purpose="batch")
            job = await self.client.batch.jobs.create_async(
                input_files=[file.id], endpoint=ENDPOINT, model=self.provider.model,
                metadata={"llmframe_chunk": uid}, timeout_hours=constants.MISTRAL_BATCH_TIMEOUT_HOURS)
        return job.id

    async def find(self, uid: str, since: float) -> str | None:
        with self.creating(), self._errors():
            found = await self.client.batch.jobs.list_async(metadata={"llmframe_chunk": uid})
        for job in found.data or []:
            if (job.metadata or {}).get("llmframe_chunk") == uid and job.created_at >= since - \
                    constants.BATCH_FIND_SLACK_SECONDS:
                return job.id
        return None

    async def poll(self, batch_id: str) -> Status:
        with self._errors():
            job = await self.client.batch.jobs.get_async(job_id=batch_id)
        error = None
        if job.status == "FAILED":
            error = "; ".join(str(getattr(e, "message", e)) for e in job.errors or []) or "the batch failed"
        return Status(str(job.status), job.status in _ENDED, job.completed_requests or 0, error)

    async def results(self, batch_id: str) -> dict[str, Response]:
        found: dict[str, Response] = {}
        with self._errors():
            job = await self.client.batch.jobs.get_async(job_id=batch_id)
            for file_id in (job.output_file, job.error_file):
                if file_id:
                    reply = await self.client.files.download_async(file_id=file_id)
                    found.update(parse_results(await reply.aread()))
        return found

    async def cancel(self, batch_id: str) -> None:
        with self._errors():
            await self.client.batch.jobs.cancel_async(job_id=batch_id)


def parse_results(data: bytes | str) -> dict[str, Response]:
    """Output or error file lines -> answers and per-request errors, by custom id."""
    found: dict[str, Response] = {}
    for line in json_lines(data):
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            continue
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        body = response.get("body") or {}
        if response.get("status_code") == 200 and isinstance(body, dict) and body.get("choices"):
            found[line["custom_id"]] = read_line(lambda: finish_reason(replies.openai(body, None)))
        else:
            problem = line.get("error") or body or "no answer"
            found[line["custom_id"]] = Response.failure(error_text(problem, response.get("status_code")))
    return found
