"""The simulator's tool mode: a model that calls named tools, then answers from their results, on every protocol.

With Simulator.tool_mode = ToolMode("lookup"), a request that declares a tool named "lookup" (OpenAI
tools, Anthropic tools, Gemini functionDeclarations) and carries no tool result yet is answered with a
call of it, its arguments derived from the row's prompt (its first user message): by default
{<the tool's first parameter>: prompt}. Once the conversation holds the results, the answer is
answer(prompt, results), by default "<tool>: <results joined by ' | '>", so a test can check that row
i's answer used row i's tool result. Several names call several tools at once (parallel calls).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .anthropic_messages import AnthropicDialect
from .answers import text_of, tokens
from .gemini_generate import GeminiDialect
from .openai_chat import Dialect


@dataclass
class ToolMode:
    """Which tools the simulated model calls, with what arguments, and how it answers from their results."""

    tools: str | Sequence[str]
    arguments: Callable[[str, str, dict], dict] | None = None  # (tool, prompt, its schema) -> arguments
    answer: Callable[[str, list[str]], str] | None = None  # (prompt, results) -> the final answer text

    @property
    def names(self) -> list[str]:
        return [self.tools] if isinstance(self.tools, str) else list(self.tools)

    def arguments_for(self, name: str, prompt: str, schema: dict) -> dict:
        if self.arguments is not None:
            return self.arguments(name, prompt, schema)
        first = next(iter((schema or {}).get("properties") or {}), None)
        return {} if first is None else {first: prompt}

    def answer_for(self, prompt: str, results: list[str]) -> str:
        if self.answer is not None:
            return self.answer(prompt, results)
        return f"{'+'.join(self.names)}: {' | '.join(results)}"


def _declared(dialect: Dialect, raw: dict) -> dict[str, dict]:
    """The tools a request declares, name -> JSON schema of its arguments."""
    tools = raw.get("tools") if isinstance(raw.get("tools"), list) else []
    found: dict[str, dict] = {}
    for tool in (t for t in tools if isinstance(t, dict)):
        if isinstance(dialect, GeminiDialect):
            for d in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
                found[d.get("name")] = d.get("parametersJsonSchema") or d.get("parameters_json_schema") or {}
        elif isinstance(dialect, AnthropicDialect):
            found[tool.get("name")] = tool.get("input_schema") or {}
        else:
            function = tool.get("function") or {}
            found[function.get("name")] = function.get("parameters") or {}
    return found


def _results(dialect: Dialect, raw: dict) -> list[str]:
    """The tool results the conversation holds so far, as text."""
    if isinstance(dialect, GeminiDialect):
        out = []
        for content in raw.get("contents") or []:
            for part in (content.get("parts") or []) if isinstance(content, dict) else []:
                response = part.get("functionResponse") if isinstance(part, dict) else None
                if isinstance(response, dict):
                    body = response.get("response") or {}
                    out.append(str(body.get("output", body.get("error", json.dumps(body)))))
        return out
    if isinstance(dialect, AnthropicDialect):
        return [b.get("content") if isinstance(b.get("content"), str) else text_of(b.get("content"))
                for m in raw.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("content"), list)
                for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
    return [text_of(m.get("content")) for m in raw.get("messages") or []
            if isinstance(m, dict) and m.get("role") == "tool"]


def _prompt(chat: dict) -> str:
    """The row's prompt: the first user message's text."""
    users = [m for m in chat.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return text_of(users[0].get("content")) if users else ""


def respond(mode: ToolMode, dialect: Dialect, raw: dict, chat: dict) -> tuple[list[tuple[str, dict]], str | None]:
    """(the calls to make, None), or ([], the final answer text), or ([], None) where tool mode does not apply."""
    declared = _declared(dialect, raw)
    names = [n for n in mode.names if n in declared]
    if not names:
        return [], None
    prompt, results = _prompt(chat), _results(dialect, raw)
    if results:
        return [], mode.answer_for(prompt, results)
    return [(n, mode.arguments_for(n, prompt, declared[n])) for n in names], None


def call_reply(dialect: Dialect, number: int, raw: dict, chat: dict, calls: list[tuple[str, dict]],
               prompt_tokens: int) -> tuple[dict, tuple[int, int]]:
    """The reply asking for these calls, in the dialect, and its (prompt, completion) tokens."""
    usage = (prompt_tokens, tokens(json.dumps(calls)))
    reply = dialect.reply(number, raw, chat, "", "stop", usage, False)
    ids = [f"call_sim_{number}_{k}" for k in range(len(calls))]
    if isinstance(dialect, GeminiDialect):
        reply["candidates"][0]["content"]["parts"] = [{"functionCall": {"id": i, "name": n, "args": a}}
                                                      for i, (n, a) in zip(ids, calls)]
    elif isinstance(dialect, AnthropicDialect):
        reply["content"] = [{"type": "tool_use", "id": i, "name": n, "input": a} for i, (n, a) in zip(ids, calls)]
        reply["stop_reason"] = "tool_use"
    else:
        choice: dict[str, Any] = reply["choices"][0]
        choice["finish_reason"] = "tool_calls"
        choice["message"] = {"role": "assistant", "content": None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in zip(ids, calls)]}
    return reply, usage
