"""OpenAI's Responses API (/v1/responses): a chat-shaped request in its terms, its reply read back.

The plan keys and renders requests as chat completions (messages, max_tokens, response_format); this
module says the same in the Responses API's words, so that api="responses" changes only the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, ProviderError
from ..plan.request import Response
from .replies import Malformed, Usage, items, label, obj, openai_usage, reasoning, reply, text

# Parameters only one of the two APIs takes: each is refused on the other, naming the way to say it there.
RESPONSES_ONLY = {
    "max_output_tokens": "max_tokens=", "reasoning": "reasoning_effort=", "text": "output= (structured outputs)",
    "instructions": "system=", "input": "the template", "previous_response_id": None, "truncation": None,
    "include": None, "background": None, "conversation": None,
}
CHAT_ONLY = {
    "stop": None, "seed": None, "max_completion_tokens": "max_tokens=", "response_format": "output=",
    "presence_penalty": None, "frequency_penalty": None, "logit_bias": None, "n": None, "logprobs": "top_logprobs",
    "messages": "the template",
}
# Why a reply stopped short, as the Responses API says it -> llmframe's finish reasons (chat's).
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def check(api: str, params: dict) -> None:
    """ConfigError for a parameter the chosen API does not take, naming the API that does (and the option)."""
    wrong = CHAT_ONLY if api == "responses" else RESPONSES_ONLY
    found = sorted(set(params) & set(wrong))
    if found:
        name = found[0]
        other = "chat completions (api='chat', the default)" if api == "responses" else "the Responses API"
        instead = f"; here, use {wrong[name]}" if wrong[name] else ""
        raise ConfigError(f"{name} is a parameter of {other}, not of api={api!r}: drop it, or pass "
                          f"api={'chat' if api == 'responses' else 'responses'!r}{instead}")


def chat_params(params: dict) -> dict:
    """Chat completions' parameters as sent: a reasoning model refuses max_tokens there, and takes
    max_completion_tokens (which bounds reasoning and answer together) instead."""
    if "reasoning_effort" in params and "max_tokens" in params:
        params = dict(params)
        params["max_completion_tokens"] = params.pop("max_tokens")
    return params


def body(model: str, messages: list[dict], params: dict) -> dict:
    """The /v1/responses body of a chat-shaped request: system messages as instructions, the rest as input."""
    rest = dict(params)
    out: dict[str, Any] = {"model": model}
    system = "\n\n".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
    if system:
        out["instructions"] = system
    out["input"] = [m if isinstance(m.get("content"), str) else _parts(m) for m in messages
                    if m["role"] not in ("system", "developer")]
    if "max_tokens" in rest:
        out["max_output_tokens"] = rest.pop("max_tokens")
    effort = rest.pop("reasoning_effort", None)
    if effort is not None:
        out["reasoning"] = {**(rest.pop("reasoning", None) or {}), "effort": effort}
    asked = rest.pop("response_format", None)
    if isinstance(asked, Mapping):
        out["text"] = {"format": _text_format(asked)}
    out.update(rest)
    return out


def _parts(message: dict) -> dict:
    """A message whose content is a list of parts (text and media): its text parts as input_text (output_text in
    an assistant's message); the media are the Responses API's already (media.responses_part)."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    kind = "output_text" if message.get("role") == "assistant" else "input_text"
    return {**message, "content": [{"type": kind, "text": p["text"]} if isinstance(p, dict) and p.get("type") == "text"
                                   else p for p in content]}


def _text_format(response_format: Mapping) -> dict:
    """Chat's response_format as the Responses API's text.format (its json_schema fields one level up)."""
    if response_format.get("type") != "json_schema":
        return dict(response_format)
    spec = response_format.get("json_schema") or {}
    return {"type": "json_schema", **spec}


def read(reply_body: Any, headers: Mapping[str, str] | None) -> Response:
    """A Responses API reply: its output_text parts, usage (reasoning tokens included in output), finish."""
    if not isinstance(reply_body, Mapping):
        raise ProviderError(f"malformed response: {Malformed('the body', reply_body)}", retryable=True,
                            headers=headers)

    def usage() -> Usage:
        return openai_usage(reply_body, "input_tokens", "output_tokens", "input_tokens_details")

    def answer() -> tuple[str, str | None]:
        status = label(reply_body.get("status"), "status")
        if status == "failed":
            error = obj(reply_body.get("error"), "error")
            raise ProviderError(f"the response failed: {error.get('message') or error.get('code') or 'no reason'}",
                                retryable=True, headers=headers)
        pieces, refused = [], False
        for n, item in enumerate(items(reply_body.get("output"), "output")):
            item = obj(item, f"output[{n}]")
            if item.get("type") != "message":
                continue  # reasoning summaries, tool calls: not answer text
            parts = items(item.get("content"), f"output[{n}].content")
            refused = refused or any(isinstance(p, Mapping) and p.get("type") == "refusal" for p in parts)
            pieces.append(text(parts, f"output[{n}].content"))
        finish = "stop"
        if status == "incomplete":
            why = obj(reply_body.get("incomplete_details"), "incomplete_details").get("reason")
            finish = _INCOMPLETE.get(why, why if isinstance(why, str) else "length")
        elif refused and not "".join(pieces):
            finish = "content_filter"
        return "".join(pieces), finish

    response = reply(usage, answer, headers)
    response.reasoning_tokens = reasoning(reply_body, "output_tokens_details")
    return response
