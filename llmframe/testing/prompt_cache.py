"""The simulator's prompt caches: a prefix seen before is billed as cached, in each protocol's own usage fields.

- OpenAI chat completions: automatic prefix caching from 1,024 prompt tokens, in steps of 128, within one
  model and prompt_cache_key; usage.prompt_tokens_details.cached_tokens (prompt_tokens counts them too).
- Gemini generateContent: implicit caching from 1,024 tokens (4,096 on Pro models), in the same steps;
  usageMetadata.cachedContentTokenCount (promptTokenCount counts them too).
- Anthropic Messages: only up to a block marked cache_control (or the last block, with the top-level
  cache_control), when the prefix up to it reaches the model's documented minimum; the longest marked prefix
  seen before is read (cache_read_input_tokens), the rest up to the last breakpoint is written
  (cache_creation_input_tokens), and input_tokens counts only what is neither.

Tokens are the simulator's own (4 characters each, testing.answers.tokens). Entries never expire (the
providers' are kept for minutes of disuse); Simulator.reset() empties the caches.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from .. import constants
from .anthropic_messages import AnthropicDialect
from .answers import text_of
from .gemini_caches import CACHED
from .gemini_generate import GeminiDialect

_CHARS = 4  # characters per simulated token
_CAPACITY = 1_000_000  # prefixes remembered; past this the cache starts afresh (memory stays bounded)


class PromptCache:
    """Prefixes seen, by protocol, model and cache key; safe to call from the server's thread."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()
        self.enabled = True

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def apply(self, dialect: Any, raw: dict, chat: dict, reply: dict) -> dict:
        """The reply with its usage showing the tokens the prompt cache served (a request never seen keeps it)."""
        if not self.enabled:
            return reply
        if isinstance(dialect, AnthropicDialect):
            return self._anthropic(raw, reply)
        if isinstance(dialect, GeminiDialect):
            meta = reply.get("usageMetadata")
            if isinstance(meta, dict) and chat.get(CACHED):  # an explicit cached content served its tokens
                meta["cachedContentTokenCount"] = min(chat[CACHED], meta.get("promptTokenCount", 0))
            elif isinstance(meta, dict):
                minimum = next((n for part, n in constants.GEMINI_CACHE_MINIMUMS if part in chat["model"]),
                               constants.GEMINI_CACHE_MINIMUM)
                cached = self._prefix(("gemini", chat["model"]), _chat_text(chat), minimum)
                if cached:
                    meta["cachedContentTokenCount"] = min(cached, meta.get("promptTokenCount", 0))
            return reply
        usage = reply.get("usage")
        if isinstance(usage, dict) and "prompt_tokens" in usage:  # chat completions (another shape: left as it is)
            scope = ("openai", chat.get("model"), raw.get("prompt_cache_key"))
            cached = self._prefix(scope, _chat_text(chat), constants.OPENAI_CACHE_MINIMUM)
            if cached:
                usage["prompt_tokens_details"] = {"cached_tokens": min(cached, usage["prompt_tokens"])}
        return reply

    def _prefix(self, scope: tuple, text: str, minimum: int) -> int:
        """Tokens of `text`'s longest prefix, in whole steps, seen before in this scope; every step is then seen."""
        if len(text) // _CHARS < minimum:
            return 0
        step = constants.OPENAI_CACHE_STEP * _CHARS
        digest = hashlib.blake2b(repr(scope).encode(), digest_size=16)
        hits, leading = 0, True
        with self._lock:
            self._bound()
            for start in range(0, len(text) - step + 1, step):
                digest.update(text[start:start + step].encode())
                name = digest.copy().digest()
                if leading and name in self._seen:
                    hits += 1
                else:
                    leading = False
                    self._seen.add(name)
        return hits * constants.OPENAI_CACHE_STEP

    def _anthropic(self, raw: dict, reply: dict) -> dict:
        """Reads and writes at the request's cache_control breakpoints, in Anthropic's usage fields."""
        usage = reply.get("usage")
        if not isinstance(usage, dict):
            return reply
        text, marks = _anthropic_blocks(raw)
        model = str(raw.get("model", ""))
        minimum = next((n for part, n in constants.ANTHROPIC_CACHE_MINIMUMS if part in model),
                       constants.ANTHROPIC_CACHE_MINIMUM)
        eligible = [end for end in marks if end // _CHARS >= minimum]
        if not eligible:  # the API reports both counts, as zeros, on every reply
            usage.update(cache_read_input_tokens=0, cache_creation_input_tokens=0)
            return reply
        read = written = 0
        with self._lock:
            self._bound()
            names = [hashlib.blake2b(f"anthropic\0{model}\0{text[:end]}".encode(), digest_size=16).digest()
                     for end in eligible]
            hit = [end for end, name in zip(eligible, names) if name in self._seen]
            read = max(hit, default=0) // _CHARS
            if eligible[-1] // _CHARS > read:
                written = eligible[-1] // _CHARS - read
            self._seen.update(names)
        total = usage.get("input_tokens", 0)
        read, written = min(read, total), min(written, max(0, total - read))
        usage.update(input_tokens=total - read - written, cache_read_input_tokens=read,
                     cache_creation_input_tokens=written)
        return reply

    def _bound(self) -> None:
        if len(self._seen) > _CAPACITY:
            self._seen.clear()


def split(reply: dict) -> tuple[int, int]:
    """(read, written) prompt-cache tokens a reply's usage bills, in any protocol's fields (0 where none)."""
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    meta = reply.get("usageMetadata") if isinstance(reply.get("usageMetadata"), dict) else {}
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    read = usage.get("cache_read_input_tokens") or details.get("cached_tokens") or meta.get("cachedContentTokenCount")
    return int(read or 0), int(usage.get("cache_creation_input_tokens") or 0)


def _chat_text(chat: dict) -> str:
    """The prompt's text, as the simulator counts its tokens (testing.answers.prompt_tokens)."""
    return "".join(text_of(m.get("content")) for m in chat.get("messages", []) if isinstance(m, dict))


def _anthropic_blocks(raw: dict) -> tuple[str, list[int]]:
    """The prompt's text in Anthropic's order (system, then the turns) and where its breakpoints end in it."""
    text, marks = [], []
    size = 0

    def walk(content: Any) -> None:
        nonlocal size
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks if isinstance(blocks, list) else ():
            if not isinstance(block, dict):
                continue
            piece = str(block.get("text", "")) if block.get("type") == "text" else ""
            text.append(piece)
            size += len(piece)
            if isinstance(block.get("cache_control"), dict):
                marks.append(size)

    if raw.get("system"):
        walk(raw["system"])
    for message in raw.get("messages") or ():
        if isinstance(message, dict):
            walk(message.get("content"))
    if isinstance(raw.get("cache_control"), dict) and size:
        marks.append(size)  # the top-level cache_control: the last cacheable block
    return "".join(text), sorted(set(marks))
