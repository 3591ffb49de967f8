"""Azure OpenAI, as a dialect of the simulator: OpenAI's bodies on Azure's paths, key header and api-version.

Chat completions are POST /openai/deployments/{deployment}/chat/completions?api-version=..., the
Responses API POST /openai/responses?api-version=..., the batch and file routes /openai/files and
/openai/batches (what the openai SDK's AzureOpenAI client calls). The key comes in an `api-key` header,
or an Entra ID token as a bearer token; a request without `api-version` is refused with Azure's 404.
The deployment (in the path, or a body's "model") is the model the answer function sees.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .openai_batches import OpenAIBatches
from .openai_chat import BadRequest, Dialect, bearer_key
from .openai_responses import ResponsesDialect


class _Azure:
    """Azure's key header and api-version, on an OpenAI dialect."""

    def key(self, request: web.Request) -> str:
        return request.headers.get("api-key", "").strip() or bearer_key(request)

    def unauthorized(self) -> web.Response:
        return self.error(401, "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                               "provide a valid key for an active subscription and use a correct regional API endpoint "
                               "for your resource.")

    def parse(self, request: web.Request, raw: Any) -> dict:
        if not request.query.get("api-version"):
            raise BadRequest("Missing required query parameter: api-version")
        chat = super().parse(request, raw)  # type: ignore[misc]
        deployment = request.match_info.get("deployment")
        return {**chat, "model": deployment} if deployment else chat


class AzureChat(_Azure, Dialect):
    """POST /openai/deployments/{deployment}/chat/completions."""


class AzureResponses(_Azure, ResponsesDialect):
    """POST /openai/responses."""


AZURE, AZURE_RESPONSES = AzureChat(), AzureResponses()
ROUTES = [("/openai/deployments/{deployment}/chat/completions", AZURE), ("/openai/responses", AZURE_RESPONSES)]


class AzureBatches(OpenAIBatches):
    """Azure's Files and Batch API: OpenAI's, under /openai/, with Azure's key; lines name a deployment."""

    vendor, dialect = "azure", AZURE
    endpoints = {"/chat/completions": AZURE, "/v1/chat/completions": AZURE, "/responses": AZURE_RESPONSES,
                 "/v1/responses": AZURE_RESPONSES}

    def routes(self):
        routes = [(method, "/openai" + path.removeprefix("/v1"), handler) for method, path, handler in super().routes()]
        return routes + [("GET", "/openai/batches", self.list_batches), ("GET", "/openai/batches/{id}", self.get_batch)]
