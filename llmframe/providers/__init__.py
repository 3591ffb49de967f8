"""The provider registry: the prefix of model= names a built-in provider or an installed plugin.

A plugin is any installed package with an entry point in the group "llmframe.providers": its name is
the prefix of model= ("myprovider" in "myprovider:some-model"), its value "module:Class", a Provider
subclass whose `name` is that prefix. Nothing is imported (no SDK, no plugin, not even the entry-point
metadata) until a model names it, so `import llmframe` stays fast.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from .. import constants
from ..errors import ConfigError
from ..plan.target import Target
from .base import Provider

# The built-in providers, as a plugin's entry point would name them. A plugin cannot take their prefixes.
BUILTINS: dict[str, str] = {
    "openai": "llmframe.providers.openai:OpenAIProvider",
    "azure": "llmframe.providers.azure:AzureOpenAIProvider",
    "anthropic": "llmframe.providers.anthropic:AnthropicProvider",
    "gemini": "llmframe.providers.gemini:GeminiProvider",
    "mistral": "llmframe.providers.mistral:MistralProvider",
    "transformers": "llmframe.providers.transformers:TransformersProvider",
    "vllm": "llmframe.providers.vllm:VLLMProvider",
}

# What each built-in provider imports, module -> its pip name; the extra of the same name installs them
# (tests/test_first_hour.py checks them against pyproject.toml). Looked up, never imported, by available().
NEEDS: dict[str, dict[str, str]] = {
    "openai": {"openai": "openai"},
    "azure": {"openai": "openai"},
    "anthropic": {"anthropic": "anthropic"},
    "gemini": {"google.genai": "google-genai"},
    "mistral": {"mistralai": "mistralai"},
    "transformers": {"torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers",
                     "xgrammar": "xgrammar"},
    "vllm": {"vllm": "vllm"},
}

__all__ = ["BUILTINS", "Entry", "NEEDS", "Provider", "available", "create", "not_installed", "parse_model",
           "provider_class", "registry", "resolve"]


@dataclass(frozen=True)
class Entry:
    """Where a provider's class lives: "module:Class", and the package that installed it (None: built in)."""

    target: str
    package: str | None = None


@functools.cache
def _plugins() -> dict[str, Entry]:
    """The installed plugins' entry points, by prefix; the first on the path wins a name two packages claim."""
    from importlib.metadata import entry_points

    found: dict[str, Entry] = {}
    for point in entry_points(group=constants.PROVIDER_ENTRY_POINTS):
        if point.name not in BUILTINS and point.name not in found:
            dist = getattr(point, "dist", None)
            found[point.name] = Entry(point.value, f"{dist.name} {dist.version}" if dist is not None else "?")
    return found


def registry() -> dict[str, Entry]:
    """Every provider model= can name: the built-ins, then the installed plugins."""
    return {**{prefix: Entry(target) for prefix, target in BUILTINS.items()}, **_plugins()}


def _entry(prefix: str) -> Entry | None:
    if prefix in BUILTINS:
        return Entry(BUILTINS[prefix])
    entry = _plugins().get(prefix)
    if entry is None:  # a package installed since the last look (pip install in a running notebook)
        _plugins.cache_clear()
        entry = _plugins().get(prefix)
    return entry


def _known() -> str:
    """The providers model= can name, for error messages: the built-ins and the plugins."""
    plugins = sorted(_plugins())
    where = f"entry points in the group {constants.PROVIDER_ENTRY_POINTS!r}"
    listed = f"provider plugins: {plugins} ({where})" if plugins else f"no provider plugins installed ({where})"
    return f"known providers: {sorted(BUILTINS)}; {listed}"


def parse_model(model: str | Provider) -> tuple[str, str]:
    """Split "provider:model" (or read a Provider instance's name and model) and check the provider is known."""
    if isinstance(model, Provider):
        return model.name, model.model
    if not isinstance(model, str) or ":" not in model:
        raise ConfigError(f"model must look like 'provider:model', e.g. 'openai:gpt-4o-mini', or be a Provider "
                          f"instance; got {model!r}; {_known()}")
    prefix, name = model.split(":", 1)
    if _entry(prefix) is None:
        raise ConfigError(f"unknown provider {prefix!r} in model {model!r}; {_known()}")
    if not name.strip():
        raise ConfigError(f"model {model!r} names no model after {prefix + ':'!r}")
    return prefix, name


def provider_class(prefix: str) -> type[Provider]:
    """The provider class for a prefix, importing its module (and SDK, or plugin) now."""
    entry = _entry(prefix)
    if entry is None:
        raise ConfigError(f"unknown provider {prefix!r}; {_known()}")
    module_name, _, attribute = entry.target.partition(":")
    plugin = f"the {prefix!r} provider plugin ({entry.target}, from {entry.package})"
    try:
        found = functools.reduce(getattr, attribute.split("."), importlib.import_module(module_name))
    except ImportError as exc:
        if entry.package is not None:
            raise ConfigError(f"{plugin} cannot be imported: {type(exc).__name__}: {exc}") from None
        raise ConfigError(_not_installed(prefix, _missing(prefix) or [exc.name or "?"])) from None
    except Exception as exc:  # a broken plugin is named, whatever it raised
        if entry.package is None:
            raise
        raise ConfigError(f"{plugin} cannot be imported: {type(exc).__name__}: {exc}") from None
    if entry.package is not None and not (isinstance(found, type) and issubclass(found, Provider)):
        raise ConfigError(f"{plugin} is not a subclass of llmframe.providers.Provider")
    if entry.package is not None and getattr(found, "name", None) != prefix:
        raise ConfigError(f"{plugin} has name = {getattr(found, 'name', None)!r}: a provider's name must be the "
                          f"prefix it is registered under ({prefix!r}), as its cache keys and limits use it")
    return found


def create(model: str | Provider, *, api_key: str | None = None, base_url: str | None = None,
           max_concurrency: int = constants.MAX_CONCURRENCY, timeout: float = constants.REQUEST_TIMEOUT_SECONDS,
           options: dict | None = None) -> Provider:
    """The provider model= names, configured: every provider llmframe uses is made here.

    A Provider instance is used as it is: its own key, endpoint, options, timeout and connection pool.
    """
    if isinstance(model, Provider):
        given = [name for name, value in (("api_key", api_key), ("base_url", base_url)) if value is not None]
        given += ["provider_options"] if options else []
        if given:
            raise ConfigError(f"model= is a {type(model).__name__} instance, which carries its own configuration: "
                              f"pass {', '.join(given)} to it when you make it, not to this call")
        return model
    prefix, name = parse_model(model)
    return provider_class(prefix)(name, api_key=api_key, base_url=base_url, max_concurrency=max_concurrency,
                                  timeout=timeout, options=options)


def resolve(model: str | Provider) -> Target:
    """model= as a plan takes it: the provider's prefix, the model's name and the provider's class (or the
    instance given), its module imported now; ConfigError for an unknown provider or one not installed."""
    prefix, name = parse_model(model)
    if isinstance(model, Provider):
        return Target(prefix, name, model, instance=model)
    return Target(prefix, name, provider_class(prefix))


def _missing(prefix: str) -> list[str]:
    """The pip names of the packages a built-in provider needs that are not installed; found without importing."""
    return not_installed(NEEDS.get(prefix, {}))


def not_installed(needs: dict[str, str]) -> list[str]:
    """The pip names of the modules (module -> pip name) that cannot be imported here; nothing is imported."""
    from importlib.util import find_spec

    def absent(module: str) -> bool:
        try:
            return find_spec(module) is None
        except (ImportError, ValueError):  # the parent package is missing (google, for google.genai), or blocked
            return True

    return [pip for module, pip in needs.items() if absent(module)]


def _not_installed(prefix: str, packages: list[str]) -> str:
    """The message for a provider whose packages are missing, naming them as pip does and the extra to install."""
    return f"the {prefix!r} provider needs {', '.join(packages)}, not installed here: pip install 'llmframe[{prefix}]'"


def available() -> dict[str, str]:
    """Each provider model= can name, and whether it can be used here: "installed", or why not.

    The built-ins are looked up without importing their SDKs (torch, vLLM take seconds); plugins are imported,
    so a broken one is named.
    """
    found = {}
    for prefix, entry in registry().items():
        if entry.package is None:
            missing = _missing(prefix)
            found[prefix] = _not_installed(prefix, missing) if missing else "installed"
            continue
        try:
            provider_class(prefix)
            found[prefix] = "installed" if entry.package is None else f"installed (plugin {entry.target} from " \
                                                                      f"{entry.package})"
        except ConfigError as exc:
            found[prefix] = str(exc)
    return found
