"""Offline testing tools: a loopback simulator of the OpenAI chat-completions API over real HTTP.

Point any OpenAI-compatible client at it; by default each answer is digest_answer(last user prompt)::

    from openai import OpenAI
    from llmframe.testing import Simulator, digest_answer

    with Simulator(latency=0.01) as sim:
        client = OpenAI(base_url=sim.base_url, api_key=sim.api_key)
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == digest_answer("hi")

A request with response_format {"type": "json_schema", "json_schema": {"name": ..., "schema": ...}}
gets a JSON instance of the schema, chosen by the last user prompt (the same prompt, the same object;
see llmframe.testing.schema_answers); {"type": "json_object"} gets {"answer": digest_answer(prompt)}.

Pass faults=Faults(...) (rate limits per API key, injected errors, hangs, resets, bad bodies, invalid
or schema-breaking JSON, fields of the wrong type, refused response formats) to test a client's retries and validation against real HTTP behaviour. It
also speaks the OpenAI, Anthropic and Gemini batch APIs (sim.batches; BatchSettings sets their
completion time, failing lines and expiry). Use SimulatorProcess to run it in a child process,
`python -m llmframe.testing` to run it from a shell, and the fixtures in llmframe.testing.pytest_plugin
(`llm_simulator`) in pytest. In a notebook, notebook_setup(simulate=True) starts one and points the providers' environment variables at it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "Simulator",
    "SimulatorProcess",
    "SimulatedError",
    "Faults",
    "digest_answer",
    "default_answer",
    "LoggedRequest",
    "notebook_setup",
    "tutorial_answer",
    "rule_answer",
    "BatchSettings",
    "media_answer",
    "ToolMode",
]

if TYPE_CHECKING:
    from .answers import default_answer, digest_answer
    from .batches import BatchSettings
    from .faults import Faults
    from .media import media_answer
    from .notebook import notebook_setup, tutorial_answer
    from .process import SimulatorProcess
    from .rules import rule_answer
    from .simulator import LoggedRequest, SimulatedError, Simulator
    from .tool_mode import ToolMode

# Names are imported on first use, so that loading the pytest plugin (which imports this package)
# does not need the optional aiohttp dependency until a fixture actually starts a server.
_HOMES = {name: "simulator" for name in __all__}
_HOMES["SimulatorProcess"] = "process"
_HOMES["Faults"] = "faults"
_HOMES["notebook_setup"] = _HOMES["tutorial_answer"] = "notebook"
_HOMES["BatchSettings"] = "batches"
_HOMES["media_answer"] = "media"
_HOMES["rule_answer"] = "rules"
_HOMES["ToolMode"] = "tool_mode"
_HOMES["digest_answer"] = _HOMES["default_answer"] = "answers"


def __getattr__(name: str) -> Any:
    """Import a re-exported name lazily from its module."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    """List the lazily imported names too."""
    return sorted([*globals(), *__all__])
