"""Anthropic's cache_control breakpoint on a request's static prefix (the plan says where it ends: plan/prefix.py).

Anthropic caches a prompt only up to a block marked with cache_control. The breakpoint goes on the last
block of the static prefix: the system prompt, a whole leading message, or the fixed text of the first
message with a row value, split into two text blocks (the model reads them as one text, so no answer changes).
"""

from __future__ import annotations

from .. import constants

_MARK = {"type": "ephemeral"}


def anthropic_breakpoint(named: dict, messages: list[dict], whole: int, chars: int) -> None:
    """Mark the end of the static prefix in the Messages API fields `named` (made from `messages`) in place.

    whole: leading messages of `messages` the same in every row; chars: then that many characters of the
    next one. Where the Messages API's layout (system apart) would not keep the prefix in front, nothing is marked.
    """
    system_at = [i for i, m in enumerate(messages) if m["role"] in ("system", "developer")]
    turns = named["messages"]
    if all(i < whole for i in system_at):
        if chars and whole < len(messages):
            _split(turns, whole - len(system_at), chars)
            return
        static_turns = whole - len(system_at)
        if static_turns > 0:
            turns[static_turns - 1] = _marked(turns[static_turns - 1])
        elif named.get("system"):
            named["system"] = [{"type": "text", "text": named["system"], "cache_control": _MARK}]
        return
    first_turn = next((i for i, m in enumerate(messages) if i not in system_at), len(messages))
    if system_at[-1] == whole and chars and first_turn > whole and isinstance(named.get("system"), str):
        before = sum(len(messages[i]["content"]) + 2 for i in system_at[:-1])  # joined with blank lines
        system = named["system"]
        named["system"] = [{"type": "text", "text": system[: before + chars], "cache_control": _MARK},
                           {"type": "text", "text": system[before + chars:]}]


def _split(turns: list[dict], at: int, chars: int) -> None:
    """Turn `at`'s text, cut after its static characters, as two text blocks, the first one marked."""
    turn = turns[at]
    content = turn.get("content")
    if not isinstance(content, str) or chars >= len(content):
        if isinstance(content, str) and chars:
            turns[at] = _marked(turn)
        return
    turns[at] = {**turn, "content": [{"type": "text", "text": content[:chars], "cache_control": _MARK},
                                     {"type": "text", "text": content[chars:]}]}


def _marked(turn: dict) -> dict:
    """A copy of a turn whose last content block carries the breakpoint."""
    content = turn.get("content")
    if isinstance(content, str):
        return {**turn, "content": [{"type": "text", "text": content, "cache_control": _MARK}]}
    if isinstance(content, list) and content and isinstance(content[-1], dict):
        return {**turn, "content": [*content[:-1], {**content[-1], "cache_control": _MARK}]}
    return turn


def gemini_context_minimum(model: str) -> int:
    """The fewest tokens Gemini caches explicitly (caches.create) on this model: its documented minimum."""
    return next((n for part, n in constants.GEMINI_CONTEXT_CACHE_MINIMUMS if part in model),
                constants.GEMINI_CONTEXT_CACHE_MINIMUM)
