"""Azure OpenAI: OpenAI's provider on the openai SDK's AsyncAzureOpenAI client, model="azure:<deployment>"."""

from __future__ import annotations

import os
import urllib.parse

import openai

from .. import constants
from ..errors import ConfigError
from .openai import OpenAIProvider, idle_client

_ENDPOINT_ENV, _VERSION_ENV, _TOKEN_ENV = "AZURE_OPENAI_ENDPOINT", "OPENAI_API_VERSION", "AZURE_OPENAI_AD_TOKEN"
_ENTRA = ("azure_ad_token_provider", "azure_ad_token")  # provider_options= that authenticate instead of a key


class AzureOpenAIProvider(OpenAIProvider):
    """model="azure:<deployment>": the endpoint from base_url= or AZURE_OPENAI_ENDPOINT, the API version from
    provider_options={"api_version": ...} or OPENAI_API_VERSION, the key from api_key= or AZURE_OPENAI_API_KEY,
    or an Entra ID token: provider_options={"azure_ad_token_provider": get_bearer_token_provider(...)}.

    Chat completions, the Responses API (api="responses") and Azure's Batch API, as OpenAI's; an Entra token
    provider, called before each request, sends every request through the SDK (transport "sdk").
    """

    name = "azure"
    key_env = ("AZURE_OPENAI_API_KEY",)
    key_hint = (" (or authenticate with Entra ID: provider_options={'azure_ad_token_provider': "
                "azure.identity.get_bearer_token_provider(...)})")
    base_url_env = _ENDPOINT_ENV
    official_endpoints = ()  # every Azure resource is its own endpoint: in every key
    price_id = "azure"
    batch_adapter = "llmframe.batch.openai:AzureBatches"

    def __init__(self, model: str, **kwargs):
        options = dict(kwargs.pop("options", None) or {})
        self.api_version = options.pop("api_version", None) or os.environ.get(_VERSION_ENV)
        if options.get("azure_ad_token_provider"):
            options.setdefault("transport", "sdk")  # a token that changes: the SDK asks for it before each request
        self._endpoint = kwargs.get("base_url") or os.environ.get(_ENDPOINT_ENV)
        if not self._endpoint:
            raise ConfigError(f"no endpoint for azure: set {_ENDPOINT_ENV}, or pass "
                              "base_url='https://<resource>.openai.azure.com'")
        if not self.api_version:
            raise ConfigError(f"no API version for azure: set {_VERSION_ENV}, or pass "
                              f"provider_options={{'api_version': '{constants.AZURE_API_VERSION_EXAMPLE}'}}")
        super().__init__(model, options=options, **kwargs)
        if self.api == "responses":
            self.batch_adapter = "llmframe.batch.openai:AzureResponsesBatches"

    def _resolve_key(self, api_key: str | None) -> str | None:
        if api_key is None and (any(self.options.get(n) for n in _ENTRA) or os.environ.get(_TOKEN_ENV)):
            return os.environ.get(self.key_env[0]) or None  # Entra ID: no key needed
        return super()._resolve_key(api_key)

    def open_client(self) -> openai.AsyncAzureOpenAI:
        sdk = self.transport == "sdk"
        return openai.AsyncAzureOpenAI(
            api_key=self._api_key,
            azure_endpoint=self._endpoint,
            api_version=self.api_version,
            max_retries=constants.SDK_MAX_RETRIES,
            http_client=self.sdk_http_client(openai.DefaultAsyncHttpxClient) if sdk else idle_client(),
            **self.options,
        )

    def resolved_url(self) -> str | None:
        return self._endpoint

    def lean_auth(self) -> dict[str, str]:
        token = self.options.get("azure_ad_token") or os.environ.get(_TOKEN_ENV)
        return {"api-key": self._api_key} if self._api_key else {"Authorization": f"Bearer {token}"}

    def lean_urls(self, base: str) -> tuple[str, str, str]:
        """Azure's paths: chat and embeddings under the deployment, each with its api-version."""
        query = "?" + urllib.parse.urlencode({"api-version": self.api_version})
        deployment = f"{base}/deployments/{urllib.parse.quote(self.model, safe='')}"
        return deployment + "/chat/completions" + query, deployment + "/embeddings" + query, base + "/responses" + query

    @property
    def secrets(self) -> tuple[str, ...]:
        token = self.options.get("azure_ad_token")
        return super().secrets + ((token,) if isinstance(token, str) and token else ())
