"""What the local-model providers share: whole groups of requests answered in a worker thread, models kept loaded.

A local model is not an HTTP service: it answers many prompts at once, far faster than one by one.
The executor hands a local provider a group of requests; `run_batches` answers it batch by batch
in a worker thread, yielding each batch's answers as they finish, so progress, cache writes and
Ctrl-C all happen between batches. This module imports neither torch nor vLLM.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConfigError, SchemaError
from ..plan.request import Request, Response
from .base import Batch, Provider

if TYPE_CHECKING:
    from ..plan.structured import OutputSchema

T = TypeVar("T")
# Parameters a local provider maps onto its engine's own names; any other in params= passes through as is.
MAPPED_PARAMS = frozenset({"temperature", "top_p", "max_tokens", "seed", "stop", "json_schema"})

_LOADED: dict[tuple, Any] = {}
_LOADING = threading.Lock()


def loaded(key: tuple, load: Callable[[], T]) -> T:
    """The model loaded under key, loading it on first use (once, even when two runs ask at the same time)."""
    with _LOADING:
        if key not in _LOADED:
            _LOADED[key] = load()
        return _LOADED[key]


def unload(model: str | None = None) -> int:
    """Free the local models this process has loaded (all of them, or one "provider:model"); returns how many."""
    with _LOADING:
        keys = [k for k in _LOADED if model is None or f"{k[0]}:{k[1]}" == model]
        for key in keys:
            closing = getattr(_LOADED.pop(key), "close", None)
            if closing is not None:
                closing()
    if keys:
        gc.collect()  # models sit in reference cycles: free their memory now, not at some later collection
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()  # hand the freed blocks back, so nvidia-smi and the next model see them
    return len(keys)


def raw_prompt(messages: list[dict]) -> str:
    """The prompt for a model without a chat template: the messages' texts, system first, one paragraph each."""
    return "\n\n".join(str(m.get("content") or "") for m in messages)


class LocalProvider(Provider):
    """A model in this process: the executor hands it whole groups (`run_batches`) instead of single requests."""

    local_groups = True
    load_options: tuple[str, ...] = ()  # options that pick what is loaded: part of the loaded-model key
    run_options: tuple[str, ...] = ()  # options that only change how it runs

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None, **kwargs):
        if base_url is not None:
            raise ConfigError(f"base_url= does not apply to {self.name}: the model runs in this process. "
                              f"To reach a model behind a server, use model='openai:...' with base_url=")
        super().__init__(model, api_key=api_key, base_url=None, **kwargs)
        unknown = sorted(set(self.options) - set(self.load_options) - set(self.run_options))
        if unknown:
            raise ConfigError(f"unknown provider_options {unknown} for {self.name}; valid ones are "
                              f"{sorted((*self.load_options, *self.run_options))}")

    @property
    def loaded_key(self) -> tuple:
        """What identifies one loaded model: provider, model and the options that change what is loaded."""
        chosen = sorted((k, repr(v)) for k, v in self.options.items() if k in self.load_options)
        return (self.name, self.model, tuple(chosen))

    @classmethod
    def output_params(cls, schema: OutputSchema, *, strict: bool, structured: str) -> dict:
        """The JSON Schema the answer is constrained to, token by token."""
        if structured != "json_schema":
            raise SchemaError(f"structured={structured!r} is for servers that cannot take a JSON Schema; "
                              f"{cls.name} always constrains decoding to the schema: drop structured=")
        return {"json_schema": schema.json_schema}

    @abstractmethod
    def run_batches(self, requests: list[Request], stop: threading.Event) -> Iterator[Batch]:
        """Answer a group, yielding each batch's answers as it finishes; stop early once stop is set.

        Runs in a worker thread. A failure in one batch is that batch's rows' errors, not an exception.
        """

    async def complete(self, request: Request) -> Response:
        """One request on its own (the executor sends groups through run_batches instead)."""
        answers = await asyncio.to_thread(lambda: [a for batch in self.run_batches([request], threading.Event())
                                                   for a in batch])
        return answers[0][1]


def check_model(provider: str, model: str, *, trust_remote_code: bool) -> None:
    """A ConfigError now, before anything is sent, when the model's config.json cannot be found or read."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load {provider} model {model!r}: {str(exc).splitlines()[0]}. "
                          "Pass a local folder made by save_pretrained, or a Hugging Face hub id") from None


def option(options: dict, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """options[name] if it has the right type (default when absent), else a ConfigError naming it."""
    value = options.get(name, default)
    if value is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"provider_options[{name!r}] must be {names}, got {value!r}")
    return value
