"""The provider registry: "provider:model" strings resolve here, and SDKs load only when used."""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import Provider

# Prefix -> "module:Class", imported lazily so `import llmframe` needs no provider SDK.
REGISTRY: dict[str, str] = {
    "openai": "llmframe.providers.openai:OpenAIProvider",
    "anthropic": "llmframe.providers.anthropic:AnthropicProvider",
    "gemini": "llmframe.providers.gemini:GeminiProvider",
    "transformers": "llmframe.providers.transformers:TransformersProvider",
    "vllm": "llmframe.providers.vllm:VLLMProvider",
}

__all__ = ["Provider", "REGISTRY", "parse_model", "provider_class"]


def parse_model(model: str) -> tuple[str, str]:
    """Split "provider:model" and check the provider is known."""
    if not isinstance(model, str) or ":" not in model:
        raise ConfigError(
            f"model must look like 'provider:model', e.g. 'openai:gpt-4o-mini'; got {model!r}. "
            f"Known providers: {sorted(REGISTRY)}"
        )
    prefix, name = model.split(":", 1)
    if prefix not in REGISTRY:
        raise ConfigError(f"unknown provider {prefix!r} in model {model!r}; known providers: {sorted(REGISTRY)}")
    if not name.strip():
        raise ConfigError(f"model {model!r} names no model after {prefix + ':'!r}")
    return prefix, name


def provider_class(prefix: str) -> type[Provider]:
    """The provider class for a prefix, importing its module (and SDK) now."""
    module_name, _, class_name = REGISTRY[prefix].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {prefix!r} provider needs a package that is not installed ({exc.name}): "
            f"pip install 'llmframe[{prefix}]'"
        ) from None
    return getattr(module, class_name)
