"""The static prefix of a run's prompts: the text every row's request starts with, for the providers' prompt caches.

Providers discount a prompt prefix they have seen before (OpenAI and Gemini on their own, Anthropic at
`cache_control` breakpoints). A template's static prefix is its leading messages without placeholders and
the fixed text of the next message before its first placeholder; nothing is reordered to make it longer
(a user's messages keep their order), so it changes no answer and no cache key: providers are only told
where the shared part ends (Provider.prompt_cache_params).
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass

from .. import constants
from .template import Prompts


@dataclass(frozen=True, slots=True)
class StaticPrefix:
    """The part every request of a run shares: whole leading messages, then characters of the next one."""

    messages: int  # leading messages that are the same in every row
    chars: int  # then this many leading characters of the next message (0: none)
    text: str  # the static text itself, in order (what the prompt-cache key is made from)
    rows: int  # requests that will share it
    whole_chars: int = 0  # characters of the whole leading messages alone
    context: bool = False  # context= is among the whole leading messages (Gemini caches those explicitly)

    @property
    def tokens(self) -> int:
        """The static prefix's length in tokens, estimated as the prompt-length check estimates it."""
        return len(self.text) // constants.CHARS_PER_TOKEN

    @property
    def whole_tokens(self) -> int:
        """The whole leading messages' length in tokens, estimated as tokens is."""
        return self.whole_chars // constants.CHARS_PER_TOKEN

    def digest(self, model: str) -> str:
        """A short stable name of this prefix on this model: OpenAI's prompt_cache_key."""
        named = hashlib.blake2b(f"{model}\0{self.text}".encode(), digest_size=8).hexdigest()
        return f"{constants.PROMPT_CACHE_KEY_PREFIX}{named}"


def static_prefix(prompts: Prompts, rows: int, *, context: bool = False) -> StaticPrefix | None:
    """The static prefix of a string or message template's prompts; None for function templates, which may
    differ from row to row in any part. context: context= was given (a whole message after the system prompt)."""
    parts = getattr(prompts, "parts", None)
    if not parts:
        return None
    whole, pieces = 0, []
    for role, text in parts:
        literal = _leading_literal(text.positional)
        if not text.columns:
            pieces.append(literal)
            whole += 1
            continue
        break
    else:
        literal = ""
    # context= is the first user message: among the whole ones only if every message before it is static
    shared = context and any(role not in ("system", "developer") for role, _ in parts[:whole])
    return StaticPrefix(whole, len(literal) if whole < len(parts) else 0, "\n".join([*pieces, literal]) if
                        whole < len(parts) else "\n".join(pieces), rows, len("\n".join(pieces)), shared)


def static_after_values(prompts: Prompts) -> int:
    """Characters of fixed text that follow the first row value: a long one would be cacheable if put first."""
    parts = getattr(prompts, "parts", None) or []
    seen, after = False, 0
    for _role, text in parts:
        for literal, name, _spec, _conversion in string.Formatter().parse(text.positional):
            if seen:
                after += len(literal)
            if name is not None:
                seen = True
    return after


def _leading_literal(positional: str) -> str:
    """The text of a positional template before its first placeholder (its doubled braces undone)."""
    pieces = []
    for literal, name, _spec, _conversion in string.Formatter().parse(positional):
        pieces.append(literal)
        if name is not None:
            break
    return "".join(pieces)
