"""DSPy on llmframe: llmframe.dspy.LM is a dspy.LM whose every call goes through llmframe's cache, rate limits
and retries, so a DSPy program's batch() over thousands of examples gets them (pip install "llmframe[dspy]").

    import dspy, llmframe.dspy
    dspy.configure(lm=llmframe.dspy.LM("openai:gpt-4o-mini", temperature=0))
    program.batch(examples, num_threads=32)   # every thread shares one rate-limit budget and the answer cache
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import dspy

from .errors import ConfigError

# DSPy's call keywords that are llmframe generation options of their own; the rest go in params=.
_OWN = ("temperature", "top_p", "max_tokens", "seed", "stop", "reasoning_effort")
_DSPY_ONLY = frozenset({"rollout_id", "num_retries", "cache", "n"})  # DSPy's bookkeeping, never sent


class LM(dspy.LM):
    """A dspy.LM for model="provider:model" (llmframe's names: "openai:...", "anthropic:...", "azure:...").

    It implements dspy.LM's forward()/aforward(), which DSPy 3.4 supports (with a DeprecationWarning) and
    3.5 removes: the extra pins dspy below 3.5.

    options: generate's keywords for every call (api_key=, base_url=, cache=, rpm=, tpm=, max_attempts=,
    timeout=, provider_options=, api=, ...). DSPy's own cache and retries are off: llmframe's do that.
    """

    def __init__(self, model: str, *, temperature: float | None = None, max_tokens: int | None = None,
                 **options: Any):
        if not isinstance(model, str) or ":" not in model:
            raise ConfigError(f"llmframe.dspy.LM takes llmframe's model names, 'provider:model' (e.g. "
                              f"'openai:gpt-4o-mini'), got {model!r}")
        super().__init__(model=model, model_type="chat", temperature=temperature, max_tokens=max_tokens, cache=False,
                         num_retries=0)
        self.options = {"progress": False, **options}

    def _call(self, prompt: str | None, messages: list[dict] | None, kwargs: dict) -> tuple[Any, dict]:
        """The one-row frame and generate's keywords of one DSPy call."""
        import pandas as pd

        sent = messages or [{"role": "user", "content": prompt}]
        given = {**self.kwargs, **kwargs}
        if (given.get("n") or 1) > 1:
            raise ConfigError("llmframe.dspy.LM answers one completion per call (n=1): llmframe caches one answer "
                              "per request; vary rollout_id or the prompt instead")
        own = {k: given[k] for k in _OWN if given.get(k) is not None}
        rest = {k: v for k, v in given.items() if k not in _OWN and k not in _DSPY_ONLY and v is not None}
        options = {**self.options, **own}
        if rest:
            options["params"] = {**(options.get("params") or {}), **rest}
        frame = pd.DataFrame({"call": [0]})
        return frame, {"template": lambda _row: [dict(m) for m in sent], "model": self.model, **options}

    def forward(self, prompt: str | None = None, messages: list[dict] | None = None, **kwargs: Any) -> Any:
        frame, call = self._call(prompt, messages, kwargs)
        template = call.pop("template")
        return _response(frame.llm.generate(template, **call), self.model)

    async def aforward(self, prompt: str | None = None, messages: list[dict] | None = None, **kwargs: Any) -> Any:
        frame, call = self._call(prompt, messages, kwargs)
        template = call.pop("template")
        return _response(await frame.llm.agenerate(template, **call), self.model)


def _response(out: Any, model: str) -> SimpleNamespace:
    """The OpenAI-shaped response DSPy reads, from generate's one-row frame; a failed row raises its error."""
    error = out["response_error"].iloc[0]
    if isinstance(error, str):
        raise RuntimeError(f"llmframe: {error}")
    report = out.attrs["llmframe"]
    finish = next(iter(report["finish_reasons"]), "stop")
    message = SimpleNamespace(content=out["response"].iloc[0], tool_calls=None, reasoning_content=None)
    usage = {"prompt_tokens": report["input_tokens"], "completion_tokens": report["output_tokens"],
             "total_tokens": report["input_tokens"] + report["output_tokens"]}
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish, index=0)], usage=usage,
                           model=model, cache_hit=bool(report["cached"]))
