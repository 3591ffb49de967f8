"""The provider and model a run goes to, as planning sees them: resolved by the face, so the plan needs no registry.

The face turns model= into a Target through the provider registry (llmframe.providers.resolve); plan()
asks of it only what ProviderKind lists, and never imports a provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .prefix import StaticPrefix
    from .structured import OutputSchema


class ProviderKind(Protocol):
    """What planning asks of a provider: its class's capabilities (llmframe.providers.base.Provider declares them)."""

    name: str  # the prefix of model=, part of every cache key
    strict_outputs: bool
    batch_adapter: str | None
    batch_embeddings: bool
    price_id: str | None
    media_urls: frozenset  # (kind, scheme) of media it takes by URL: ("image", "https")
    media_max_bytes: dict  # kind -> the most bytes it takes of one image or document
    media_kinds: frozenset  # "image", "document": what it takes at all

    def check_params(self, params: dict) -> None: ...

    def check_api(self, api: str | None, params: dict) -> None: ...

    def output_params(self, schema: OutputSchema, *, strict: bool, structured: str) -> dict: ...

    def endpoint_for(self, base_url: str | None) -> str | None: ...

    def prompt_cache_params(self, prefix: StaticPrefix, model: str) -> dict: ...

    # Embeddings (df.llm.embed, plan.embed): see providers.base.Provider.
    embedding_limits: tuple[int, int] | None
    embedding_input_tokens: int | None

    def embedding_model(self, model: str, *, dimensions: int | None, endpoint: str | None) -> None: ...

    def chat_model(self, model: str, *, endpoint: str | None) -> None: ...

    def embeds_media(self, model: str) -> bool: ...


class GivenProvider(ProviderKind, Protocol):
    """A Provider instance passed as model=: used as it is, so its endpoint is the one it resolved itself."""

    @property
    def endpoint(self) -> str | None: ...


@dataclass(frozen=True)
class Target:
    """model= resolved: the provider's prefix and the model's name, the provider's class (or the instance given)."""

    provider: str  # the prefix of model=, e.g. "openai"
    model: str  # the model's own name
    kind: ProviderKind  # the provider's class; the instance itself where one was passed as model=
    instance: GivenProvider | None = None  # a Provider passed as model=, which the engine uses as it is

    @property
    def name(self) -> str:
        """"provider:model": the report's and the price's name for it (a Provider instance's too)."""
        return f"{self.provider}:{self.model}"

    @property
    def price_id(self) -> str | None:
        """The provider's id in genai-prices; None where it has none (priced only by prices=)."""
        return self.kind.price_id

    def endpoint(self, base_url: str | None) -> str | None:
        """The endpoint as it is in the keys (None for the official one): an instance's own, else base_url='s."""
        return self.instance.endpoint if self.instance is not None else self.kind.endpoint_for(base_url)
