"""Tool calls on the wire: how each protocol declares tools, asks for calls and takes their results back.

The loop itself is one (engine/toolloop.py); a provider supplies only these spellings, through
Provider.tool_params, its complete() (the reply's ToolTurn) and Provider.tool_messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..plan.tools import ToolCall, ToolResult, ToolTurn

# The keys of an OpenAI assistant message that go back in the conversation (not refusal, annotations, audio).
_OPENAI_ECHO = ("role", "content", "tool_calls")


def _decoded(arguments: Any) -> tuple[Any, str | None]:
    """Arguments sent as a JSON text, decoded; (None, the problem) when they are not JSON."""
    if isinstance(arguments, (dict, list)) or arguments is None:
        return arguments or {}, None
    try:
        return json.loads(arguments) if arguments.strip() else {}, None
    except (ValueError, AttributeError):
        return None, f"the arguments are not valid JSON: {str(arguments)[:200]!r}"


# --- OpenAI chat completions -------------------------------------------------------------------------------

def openai_params(specs: list[dict]) -> dict:
    return {"tools": [{"type": "function", "function": spec} for spec in specs]}


def openai_turn(body: Any) -> ToolTurn | None:
    """The tool calls of a chat completion, or None when it answers."""
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return None
    calls = message.get("tool_calls") if isinstance(message, Mapping) else None
    if not calls or not isinstance(calls, list):
        return None
    made = []
    for n, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        function = function if isinstance(function, Mapping) else {}
        arguments, problem = _decoded(function.get("arguments"))
        made.append(ToolCall(str(call.get("id") or f"call_{n}"), str(function.get("name")), arguments, problem))
    echo = {k: message[k] for k in _OPENAI_ECHO if k in message}
    echo["role"] = "assistant"
    return ToolTurn(echo, made)


def openai_messages(turn: ToolTurn, results: list[ToolResult]) -> list[dict]:
    return [turn.message, *({"role": "tool", "tool_call_id": r.call.id, "content": r.text} for r in results)]


# --- Anthropic Messages ------------------------------------------------------------------------------------

def anthropic_params(specs: list[dict]) -> dict:
    return {"tools": [{"name": s["name"], "description": s["description"], "input_schema": s["parameters"]}
                      for s in specs]}


def anthropic_turn(body: Any) -> ToolTurn | None:
    """The tool_use blocks of a message, or None when it answers."""
    blocks = body.get("content") if isinstance(body, Mapping) else None
    if not isinstance(blocks, list):
        return None
    uses = [b for b in blocks if isinstance(b, Mapping) and b.get("type") == "tool_use"]
    if not uses:
        return None
    calls = [ToolCall(str(b.get("id")), str(b.get("name")), *_decoded(b.get("input"))) for b in uses]
    return ToolTurn({"role": "assistant", "content": blocks}, calls)


def anthropic_messages(turn: ToolTurn, results: list[ToolResult]) -> list[dict]:
    blocks = [{"type": "tool_result", "tool_use_id": r.call.id, "content": r.text, **({"is_error": True} if r.error
                                                                                       else {})} for r in results]
    return [turn.message, {"role": "user", "content": blocks}]


# --- Gemini function calling -------------------------------------------------------------------------------

def gemini_params(specs: list[dict]) -> dict:
    declarations = [{"name": s["name"], "description": s["description"], "parameters_json_schema": s["parameters"]}
                    for s in specs]
    return {"tools": [{"function_declarations": declarations}]}


def gemini_turn(candidate: Any) -> ToolTurn | None:
    """The function_call parts of a candidate (google-genai's types), or None when it answers.

    The whole content goes back as the model's turn, thought signatures included (JSON: bytes as base64).
    """
    content = getattr(candidate, "content", None)
    parts = getattr(content, "parts", None) or []
    calls = [p.function_call for p in parts if getattr(p, "function_call", None) is not None]
    if not calls:
        return None
    made = [ToolCall(c.id or "", str(c.name), c.args or {}) for c in calls]  # ids: the Developer API may send none
    message = content.model_dump(mode="json", exclude_none=True)
    message["role"] = "model"
    return ToolTurn(message, made)


def gemini_messages(turn: ToolTurn, results: list[ToolResult]) -> list[dict]:
    parts = [{"function_response": {**({"id": r.call.id} if r.call.id else {}),
                                    "name": r.call.name, "response": {"error" if r.error else "output": r.text}}}
             for r in results]
    return [turn.message, {"role": "user", "parts": parts}]
