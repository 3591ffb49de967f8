"""OpenAI's Responses API (POST /v1/responses), as a dialect of the simulator.

The body is parsed into the chat-completions shape every route shares (instructions become a leading
system message, input the other messages, text.format a response_format, max_output_tokens max_tokens);
the reply is a Response object: output message parts, usage with input and output token details, and
a status ("completed", or "incomplete" with the reason). A request with reasoning.effort (or chat's
reasoning_effort, on the chat route) is billed REASONING_TOKENS more output tokens, reported as reasoning.
"""

from __future__ import annotations

import time
from typing import Any

from .openai_chat import MODEL, BadRequest, Dialect, format_problem, reasoning_tokens


_TEXT_PARTS = ("input_text", "output_text", "text")


def _text(content: Any) -> str:
    """A message's text: a string, or its input_text / output_text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest("Invalid type for 'input[].content': expected a string or an array of content parts.")
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict)
                   and p.get("type") in _TEXT_PARTS)


def _content(content: Any) -> Any:
    """A message's content as the answer reads it: its text, or, with images and files, text and media parts."""
    if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") not in _TEXT_PARTS for p in content):
        from .media import responses_content  # checked as the API checks them, normalised for the answer

        return responses_content(content)
    return _text(content)


def _response_format(text: Any) -> dict | None:
    """text.format as chat's response_format (json_schema's name, schema and strict one level down)."""
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") != "json_schema":
        return dict(fmt)
    return {"type": "json_schema", "json_schema": {k: v for k, v in fmt.items() if k != "type"}}


class ResponsesDialect(Dialect):
    """The Responses API: OpenAI's key, errors and rate-limit headers; its own request and reply."""

    def parse(self, request, raw: Any) -> dict:
        if not isinstance(raw, dict) or "input" not in raw:
            raise BadRequest("Missing required parameter: 'input'.")
        if "messages" in raw or "response_format" in raw:
            raise BadRequest(f"Unknown parameter: '{'messages' if 'messages' in raw else 'response_format'}'.")
        given = raw["input"]
        messages = [{"role": "user", "content": given}] if isinstance(given, str) else None
        if messages is None:
            if not isinstance(given, list):
                raise BadRequest("Invalid type for 'input': expected a string or an array.")
            messages = [{"role": m.get("role", "user"), "content": _content(m.get("content"))} for m in given
                        if isinstance(m, dict)]
        if isinstance(raw.get("instructions"), str):
            messages.insert(0, {"role": "system", "content": raw["instructions"]})
        chat: dict = {"model": raw.get("model", MODEL), "messages": messages}
        for ours, theirs in (("max_tokens", "max_output_tokens"), ("temperature", "temperature"),
                             ("top_p", "top_p")):
            if raw.get(theirs) is not None:
                chat[ours] = raw[theirs]
        response_format = _response_format(raw.get("text"))
        if response_format is not None:
            chat["response_format"] = response_format
            problem = format_problem(chat)
            if problem is not None:
                raise BadRequest(problem.replace("response_format.json_schema", "text.format").replace(
                    "response_format", "text.format"))
        return chat

    def reply(self, number: int, raw: dict, chat: dict, text: str, finish: str, usage: tuple[int, int],
              empty: bool) -> dict:
        prompt, completion = usage
        thought = reasoning_tokens(raw)
        output = [] if empty else [{"id": f"msg_sim_{number}", "type": "message", "role": "assistant",
                                    "status": "completed",
                                    "content": [{"type": "output_text", "text": text, "annotations": []}]}]
        if thought:
            output.insert(0, {"id": f"rs_sim_{number}", "type": "reasoning", "summary": []})
        incomplete = finish == "length"
        return {
            "id": f"resp_sim_{number}", "object": "response", "created_at": int(time.time()),
            "model": chat.get("model", MODEL), "status": "incomplete" if incomplete else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "output": output,
            "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": completion + thought, "output_tokens_details": {"reasoning_tokens": thought},
                      "total_tokens": prompt + completion + thought},
        }


RESPONSES = ResponsesDialect()
ROUTES = [("/v1/responses", RESPONSES)]
