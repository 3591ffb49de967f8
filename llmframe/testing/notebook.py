"""The first cell of llmframe's notebooks: the offline simulator, or real providers, behind one switch.

    SIMULATE = True   # False: real providers, with the usual API keys set in the environment
    from llmframe.testing import notebook_setup
    notebook_setup(simulate=SIMULATE)

With simulate=True it starts a Simulator in the kernel and points every provider's standard
environment variables (OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_..., GOOGLE_GEMINI_BASE_URL,
GEMINI_API_KEY, ...) and LLMFRAME_CACHE_DIR (a fresh, empty directory) at it, so the notebook's
generate calls read exactly as they would against a real API. Running the cell again replaces the
simulator; simulate=False restores the environment the kernel started with.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from .answers import last_user_text
from .rules import rule_answer
from .simulator import Simulator

# The environment variables the official SDKs read, per provider: (endpoint, keys).
PROVIDER_ENV = {
    "openai": ("OPENAI_BASE_URL", ("OPENAI_API_KEY",)),
    "anthropic": ("ANTHROPIC_BASE_URL", ("ANTHROPIC_API_KEY",)),
    "gemini": ("GOOGLE_GEMINI_BASE_URL", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
}
CACHE_ENV = "LLMFRAME_CACHE_DIR"
NOTEBOOK_LATENCY_SECONDS = 0.05  # slow enough that the progress bar is seen moving, fast enough for CI

_NEGATIVE = ("broke", "never", "nothing like", "useless", "refund", "worst")


def tutorial_answer(body: dict) -> str:
    """The simulated model of the demo and notebooks: a keyword rule for sentiment prompts, the semantic
    operators' rules (llmframe.testing.rules), else the default answer."""
    text = last_user_text(body).lower()
    if body.get("response_format") or "sentiment" not in text:
        return rule_answer(body)
    if any(word in text for word in _NEGATIVE):
        return "mixed" if "decent" in text else "negative"
    return "positive"


@dataclass
class Backend:
    """Where this kernel's generate calls go: a simulator (with its own cache) or the real providers."""

    simulator: Simulator | None
    cache_dir: str | None  # the simulator's private cache; None: the usual cache directory

    def __repr__(self) -> str:
        if self.simulator is None:
            keys = [k for _, names in PROVIDER_ENV.values() for k in names if os.environ.get(k)]
            found = ", ".join(keys) if keys else "none: set one before running the next cells"
            return f"Real providers (API keys in the environment: {found}). Calls cost money; answers are cached."
        return (f"Simulator at {self.simulator.base_url}: simulated answers, no API key, no network, no cost.\n"
                f"Cache: {self.cache_dir} (fresh for this session).")

    def stop(self) -> None:
        """Stop the simulator and remove its cache; safe to call twice."""
        if self.simulator is not None:
            self.simulator.stop()
        if self.cache_dir is not None:
            shutil.rmtree(self.cache_dir, ignore_errors=True)


_current: Backend | None = None
_original_env: dict[str, str | None] = {}  # the variables as the kernel started, before the first simulate


def _restore_env() -> None:
    """Put back every variable notebook_setup changed."""
    for name, value in _original_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def notebook_setup(simulate: bool = True, *, latency: float = NOTEBOOK_LATENCY_SECONDS,
                   answer: Callable[[dict], str] | None = None) -> Backend:
    """Point this kernel's providers at a fresh simulator (simulate=True), or at the real ones (False)."""
    global _current
    if _current is not None:
        _current.stop()
        _current = None
    _restore_env()
    if not simulate:
        _current = Backend(None, None)
        return _current
    simulator = Simulator(latency=latency, answer=answer or tutorial_answer).start()
    cache_dir = tempfile.mkdtemp(prefix="llmframe-notebook-")
    env = {CACHE_ENV: cache_dir}
    urls = {"openai": simulator.base_url, "anthropic": simulator.anthropic_base_url,
            "gemini": simulator.gemini_base_url}
    for provider, (endpoint, keys) in PROVIDER_ENV.items():
        env[endpoint] = urls[provider]
        env.update(dict.fromkeys(keys, simulator.api_key))
    for name in env:
        _original_env.setdefault(name, os.environ.get(name))
    os.environ.update(env)
    _current = Backend(simulator, cache_dir)
    atexit.register(_current.stop)
    return _current
