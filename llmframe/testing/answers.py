"""What the simulator answers, the same on every route: the answer to a chat body, its tokens and its limit.

Every route parses its vendor's body into OpenAI's chat-completions shape first, so the functions
here (and an answer function a test passes) only ever see that one shape.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .schema_answers import instance, invalid_json, violation


def digest_answer(prompt: str) -> str:
    """Return the deterministic default answer for a prompt."""
    return "answer-" + hashlib.sha256(prompt.encode()).hexdigest()[:16]


def text_of(content: Any) -> str:
    """Return the text of a message content: a string, a list of content parts, or None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(body: dict) -> str:
    """Return the text of the last user message, or "" if there is none."""
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return text_of(users[-1].get("content")) if users else ""


def media_suffix(ids: list[str]) -> str:
    """What a message's media (their ids: the bytes' sha256 head, or "url:" and the URL) add to its text in answers."""
    return f"\n[media:{','.join(ids)}]" if ids else ""


def last_user_media(body: dict) -> str:
    """media_suffix of the last user message's media parts (testing/media.py normalises every route's)."""
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    if not isinstance(content, list):
        return ""
    return media_suffix([f"url:{p['url']}" if "url" in p else p["sha256"][:16] for p in content
                         if isinstance(p, dict) and p.get("type") == "media"])


def conversation_text(body: dict) -> str:
    """Every message's text, in order: what seeds a structured answer."""
    return "\n".join(text_of(m.get("content")) for m in body.get("messages", []) if isinstance(m, dict))


def structured_format(body: dict) -> tuple[str, dict | None] | None:
    """("json_schema", schema), ("json_object", None), or None for a request that asks for free text."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json_object", None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return "json_schema", schema if isinstance(schema, dict) else {}
    return None


def default_answer(body: dict) -> str:
    """Answer digest_answer of the last user message's text, or JSON when the request asks for it.

    With response_format json_schema, the answer is an instance of the schema that the whole
    conversation chooses (see llmframe.testing.schema_answers.instance), so a follow-up turn that
    asks for a correction gets a new answer; with json_object, it is {"answer": digest_answer(text)}.
    """
    prompt = last_user_text(body) + last_user_media(body)  # media: the answer follows their bytes
    structured = structured_format(body)
    if structured is None:
        return digest_answer(prompt)
    kind, schema = structured
    if kind == "json_object":
        return json.dumps({"answer": digest_answer(prompt)})
    return json.dumps(instance(schema, conversation_text(body)))


def spoil(fault: str, text: str, body: dict) -> tuple[str, str | None]:
    """Apply an answer fault to a structured request's answer; a request it does not apply to keeps both."""
    structured = structured_format(body)
    if structured is None:
        return text, None
    prompt = last_user_text(body)
    if fault == "invalid_json":
        return invalid_json(text, prompt), fault
    kind, schema = structured
    if kind != "json_schema":
        return text, None  # no schema to break
    try:
        value = json.loads(text)
    except ValueError:
        value = instance(schema, prompt)
    try:
        return json.dumps(violation(schema, prompt, value)), fault
    except ValueError:  # the schema allows any JSON
        return text, None


def tokens(text: str) -> int:
    """Approximate a token count deterministically (about 4 characters per token)."""
    return max(1, len(text) // 4)


def prompt_tokens(chat: dict) -> int:
    """The tokens of every message of a chat body."""
    text = tokens("".join(text_of(m.get("content")) for m in chat["messages"] if isinstance(m, dict)))
    return text + sum(p.get("tokens", 0) for m in chat["messages"] if isinstance(m, dict)  # images, documents
                      and isinstance(m.get("content"), list) for p in m["content"]
                      if isinstance(p, dict) and p.get("type") == "media")


def completion_limit(chat: dict) -> int | None:
    """The most completion tokens a chat body allows, or None for no limit."""
    limit = chat.get("max_completion_tokens") or chat.get("max_tokens")
    return limit if isinstance(limit, int) else None


def fit(text: str, limit: int | None) -> tuple[str, bool]:
    """The answer cut to a completion limit, and whether it was cut (finish reason "length")."""
    if limit is not None and tokens(text) > limit:
        return text[: limit * 4], True
    return text, False
