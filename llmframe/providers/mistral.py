"""Mistral's chat completions, model="mistral:<name>", configured by the official mistralai SDK."""

from __future__ import annotations

import os

try:
    from mistralai.client import Mistral
except ImportError:  # mistralai before 2.0 has it at the top
    from mistralai import Mistral

from .. import constants
from ..plan.request import Request, Response
from ..plan.structured import OutputSchema
from . import replies
from .base import Provider
from .http import JSONClient

# Mistral's finish reasons in llmframe's vocabulary (OpenAI's): model_length is the model's context running out.
_FINISH = {"model_length": "length"}


class MistralProvider(Provider):
    """model="mistral:<name>"; base_url= or MISTRAL_BASE_URL for another server (the SDK's server_url).

    The SDK resolves the server and the key; the one request per row goes through the lean JSON client
    (Mistral's chat API takes and returns OpenAI's shapes), whose reply headers feed the rate limiter.
    """

    name = "mistral"
    key_env = ("MISTRAL_API_KEY",)
    extra = "mistral"
    base_url_env = constants.MISTRAL_BASE_URL_ENV
    official_endpoints = (constants.MISTRAL_ENDPOINT, "https://api.eu.mistral.ai", "https://api.us.mistral.ai")
    # Mistral's per-minute limits: x-ratelimit-{limit,remaining}-req-minute and -tokens-minute, no reset header.
    # "{kind:.3}" spells "requests" as "req" (and "tokens" as "tok", never sent); the second dialect has tokens.
    ratelimit_headers = (constants.MISTRAL_RATELIMIT_HEADERS_REQUESTS, constants.MISTRAL_RATELIMIT_HEADERS_TOKENS)
    price_id = "mistral"
    batch_adapter = "llmframe.batch.mistral:MistralBatches"

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self._client = self.open_client()  # now: a bad provider_options= fails before anything is sent
        self._url = self.resolved_url().rstrip("/") + "/v1/chat/completions"
        self._http = JSONClient({"Authorization": f"Bearer {self._api_key}"}, max_connections=self.max_concurrency,
                                timeout=self.timeout, secrets=self.secrets)

    def open_client(self) -> Mistral:
        return Mistral(api_key=self._api_key, server_url=self.base_url or os.environ.get(self.base_url_env) or None,
                       timeout_ms=int(self.timeout * 1000), **self.options)

    def resolved_url(self) -> str:
        return self.client.sdk_configuration.get_server_details()[0]

    @classmethod
    def output_params(cls, schema: OutputSchema, *, strict: bool, structured: str) -> dict:
        """Mistral's response_format: json_schema (strict where asked), or JSON mode."""
        if structured == "json_object":
            return {"response_format": {"type": "json_object"}}
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in schema.name)[:64]
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema.json_schema,
                                                                            "strict": strict}}}

    @staticmethod
    def request_params(params: dict) -> dict:
        """llmframe's generation parameters as Mistral names them (seed is its random_seed)."""
        if "seed" not in params:
            return params
        params = dict(params)
        params["random_seed"] = params.pop("seed")
        return params

    async def complete(self, request: Request) -> Response:
        body = {"model": self.model, "messages": request.messages, **self.request_params(request.params)}
        headers, reply = await self._http.post(self._url, body)
        return finish_reason(replies.openai(reply, headers))

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None  # a next use (the batch adapter, another run) opens a new one


def finish_reason(response: Response) -> Response:
    """The response with Mistral's finish reason in llmframe's vocabulary."""
    response.finish_reason = _FINISH.get(response.finish_reason, response.finish_reason)
    return response
