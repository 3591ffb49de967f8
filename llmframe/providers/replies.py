"""Reading reply bodies: every field checked for its type, so nothing a server sends can break the run.

A well-formed JSON reply may still hold a field of the wrong type (a gateway's content parts, a number
where text belongs, a token count as a string). Such a reply is "malformed response: <field> ...", a
retryable ProviderError like a body that is not JSON, carrying the tokens its usage bills where the
usage itself could be read. Texts are made valid Unicode (a lone surrogate becomes U+FFFD): the
answer store and the cache hold UTF-8.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ProviderError
from ..plan.request import Response

# Content-part types whose "text" is answer text; other parts (images, reasoning, tool calls) are skipped.
_TEXT_PARTS = frozenset({"text", "output_text"})
# A count past this is no real one (no context is near it); summed over a row's attempts, counts stay
# well inside the answer store's int32.
_MAX_TOKENS = 2**26

Usage = tuple[int, int, int, int]  # input, output, cached input and cache-write tokens (of the input)


class Malformed(ValueError):
    """A field of a reply that has the wrong type: says which field and what it held."""

    def __init__(self, where: str, value: Any, problem: str | None = None):
        if problem is not None:
            kind = problem
        elif isinstance(value, str):
            kind = f"the text {value[:40]!r}"
        else:
            name = {list: "list", dict: "object", bool: "boolean", type(None): "null"}.get(type(value),
                                                                                      type(value).__name__)
            kind = f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                kind += f" ({value})"
        super().__init__(f"{where} is {kind}")


def obj(value: Any, where: str) -> Mapping:
    """A JSON object (missing is empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Malformed(where, value)
    return value


def items(value: Any, where: str) -> list:
    """A JSON array (missing is empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(where, value)
    return value


def count(value: Any, where: str) -> int:
    """A token count: a whole number from 0 (missing is 0); a whole float (12.0) is taken as that number."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(where, value)
    if not 0 <= value <= _MAX_TOKENS:
        raise Malformed(where, value, f"{value}, no token count")
    return value


def label(value: Any, where: str) -> str | None:
    """A finish reason: text or missing."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(where, value)
    return unicode(value)


def text(value: Any, where: str) -> str:
    """Answer text: a string, or a list of content parts whose text parts are joined (missing is "")."""
    if value is None:
        return ""
    if isinstance(value, str):
        return unicode(value)
    if not isinstance(value, list):
        raise Malformed(where, value)
    pieces = []
    for part in value:
        if isinstance(part, str):
            pieces.append(part)
        elif not isinstance(part, Mapping):
            raise Malformed(f"{where} part", part)
        elif part.get("type", "text") in _TEXT_PARTS:
            if not isinstance(part.get("text"), str):
                raise Malformed(f"{where} text part", part.get("text"))
            pieces.append(part["text"])
    return unicode("".join(pieces))


def unicode(value: str) -> str:
    """The text as valid Unicode: JSON can carry half a surrogate pair, which UTF-8 cannot."""
    if value.isascii():
        return value
    try:
        value.encode()
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def reply(usage: Callable[[], Usage], answer: Callable[[], tuple[str, str | None]],
          headers: Mapping[str, str] | None) -> Response:
    """The Response of a reply read by `usage` and `answer`; a mistyped field raises a retryable ProviderError.

    Usage is read first, so a reply whose answer is broken still reports the tokens it bills.
    """
    billed: Usage = (0, 0, 0, 0)
    try:
        billed = usage()
        answer_text, finish = answer()
    except Malformed as exc:
        raise ProviderError(f"malformed response: {exc}", retryable=True, headers=headers, billed=billed) from None
    except ProviderError as exc:  # no answer in it (no choices): its usage is billed all the same
        exc.billed = billed
        raise
    return Response(text=answer_text, input_tokens=billed[0], output_tokens=billed[1], finish_reason=finish,
                    headers=headers, cached_input_tokens=billed[2], cache_write_tokens=billed[3])


def openai(body: Any, headers: Mapping[str, str] | None) -> Response:
    """An OpenAI chat completion (the lean client's body, or the SDK's raw one)."""
    if not isinstance(body, Mapping):
        raise ProviderError(f"malformed response: {Malformed('the body', body)}", retryable=True, headers=headers)

    def usage() -> Usage:
        return openai_usage(body, "prompt_tokens", "completion_tokens", "prompt_tokens_details")

    confidence: list[float | None] = [None]

    def answer() -> tuple[str, str | None]:
        choices = items(body.get("choices"), "choices")
        if not choices:
            raise ProviderError("the server returned no choices", retryable=True, headers=headers)
        choice = obj(choices[0], "choices[0]")
        message = obj(choice.get("message"), "choices[0].message")
        confidence[0] = token_confidence(choice.get("logprobs"))
        return (text(message.get("content"), "choices[0].message.content"),
                label(choice.get("finish_reason"), "choices[0].finish_reason"))

    response = reply(usage, answer, headers)
    response.confidence = confidence[0]
    response.reasoning_tokens = reasoning(body, "completion_tokens_details")
    return response


def openai_usage(body: Mapping, inputs: str, outputs: str, details: str) -> Usage:
    """An OpenAI-style usage object's counts, under the field names of its API (chat completions or Responses)."""
    counts = obj(body.get("usage"), "usage")
    found = obj(counts.get(details), f"usage.{details}")
    return (count(counts.get(inputs), f"usage.{inputs}"), count(counts.get(outputs), f"usage.{outputs}"),
            count(found.get("cached_tokens"), f"usage.{details}.cached_tokens"), 0)


def token_confidence(logprobs: Any) -> float | None:
    """The answer's confidence from its tokens' log-probabilities: exp of their mean (None where there are none)."""
    if not isinstance(logprobs, Mapping) or not isinstance(logprobs.get("content"), list):
        return None
    return mean_probability([t.get("logprob") for t in logprobs["content"] if isinstance(t, Mapping)])


def mean_probability(logprobs: list) -> float | None:
    """exp of the mean of an answer's token log-probabilities, what a cascade reads as its confidence (None where
    there are none: the local providers' and the APIs' alike)."""
    values = [v for v in logprobs if isinstance(v, (int, float)) and not isinstance(v, bool) and -math.inf < v <= 0]
    if not values:
        return None
    return math.exp(sum(values) / len(values))


def reasoning(body: Mapping, details: str) -> int:
    """The reasoning tokens an OpenAI usage reports in usage.<details>.reasoning_tokens (part of the output
    tokens, already billed); 0 where it reports none, or something that is no count (it only informs)."""
    try:
        found = obj(obj(body.get("usage"), "usage").get(details), details).get("reasoning_tokens")
        return count(found, "reasoning_tokens")
    except Malformed:
        return 0


def anthropic(body: Any, headers: Mapping[str, str] | None, finish: Callable[[str | None], str | None]) -> Response:
    """An Anthropic message; finish maps its stop reason into llmframe's vocabulary."""
    if not isinstance(body, Mapping):
        raise ProviderError(f"malformed response: {Malformed('the body', body)}", retryable=True, headers=headers)

    def usage() -> Usage:
        counts = obj(body.get("usage"), "usage")
        # Anthropic counts prompt-cache reads and writes apart from input_tokens; llmframe's input is the
        # whole prompt, of which reads and writes are priced at their own rates (a write at 1.25x the input).
        read = count(counts.get("cache_read_input_tokens"), "usage.cache_read_input_tokens")
        written = count(counts.get("cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
        return count(counts.get("input_tokens"), "usage.input_tokens") + read + written, \
            count(counts.get("output_tokens"), "usage.output_tokens"), read, written

    def answer() -> tuple[str, str | None]:
        blocks = items(body.get("content"), "content")
        return text(blocks, "content"), finish(label(body.get("stop_reason"), "stop_reason"))

    return reply(usage, answer, headers)
