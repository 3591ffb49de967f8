"""rows_per_request=k: k rows in one request as numbered items, answered as a list keyed by item id.

The shared part of the template (its static prefix) is sent once per request, each row's own part as an
item; the answer is {"answers": [{"id": n, "answer": ...}]}, each answer a text or an instance of the
user's schema. The engine (engine/packed.py) maps answers back by id and asks a row again alone where its
item is missing, repeated or invalid: an answer is never shifted onto another row. Pure: no I/O.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from .. import constants
from ..errors import ConfigError
from .prefix import StaticPrefix
from .request import Request, loads
from .structured import OutputSchema

_ITEM = re.compile(r'<item id="(\d+)">\n(.*?)\n</item>', re.S)


@dataclass(frozen=True)
class Packing:
    """How k rows become one request, and how its answer becomes k rows' answers."""

    size: int  # rows per request, at most
    chars: int  # the static characters of the last message: the instruction, sent once
    params: dict  # the packed request's parameters: the run's, asking for the list of answers
    structured: bool  # each item's answer is an instance of the user's schema (else a text)

    def request(self, requests: list[Request]) -> Request:
        """One request for these rows' requests (all made from the same template)."""
        messages = requests[0].messages
        last = messages[-1]
        items = "\n".join(f'<item id="{n}">\n{r.messages[-1]["content"][self.chars:]}\n</item>'
                          for n, r in enumerate(requests, 1))
        content = (last["content"][: self.chars] + constants.PACK_PROMPT.format(count=len(requests)) + items)
        return Request("", [*messages[:-1], {"role": last["role"], "content": content}], self.params)

    def check(self, text: str | None) -> tuple[Any, str | None]:
        """The packed answer's own shape: a JSON object with a list of answers (items are judged one by one)."""
        try:
            value = loads(text or "")
        except ValueError:
            return None, "the answer is not JSON"
        if not isinstance(value, dict) or not isinstance(value.get("answers"), list):
            return None, 'the answer needs a list of answers: {"answers": [{"id": 1, "answer": ...}, ...]}'
        return value, None

    def split(self, value: dict, count: int) -> dict[int, str]:
        """Each item's answer text by id (1..count), for the ids answered exactly once with an answer of the
        right kind; ids missing, repeated, unknown or of the wrong kind are left out (their rows are asked alone)."""
        seen: dict[int, list[Any]] = {}
        for entry in value.get("answers", ()):
            if isinstance(entry, dict) and isinstance(entry.get("id"), int) and "answer" in entry:
                seen.setdefault(entry["id"], []).append(entry["answer"])
        out = {}
        for n in range(1, count + 1):
            answers = seen.get(n, ())
            if len(answers) != 1:
                continue
            answer = answers[0]
            if self.structured:
                if isinstance(answer, dict):
                    out[n] = json.dumps(answer, ensure_ascii=False)
            elif isinstance(answer, str) and answer.strip():
                out[n] = answer
        return out


def item_texts(content: str) -> list[tuple[int, str]]:
    """The numbered items of a packed request's last message: (id, text), in order (the simulator reads them)."""
    return [(int(n), text) for n, text in _ITEM.findall(content)]


def pack_schema(item: dict | None) -> OutputSchema:
    """The schema of a packed answer: a list of {id, answer}, each answer a text or an instance of `item`."""
    defs: dict = {}
    if item is None:
        answer: dict = {"type": "string"}
    else:
        answer = copy.deepcopy(item)
        defs = answer.pop("$defs", {})  # hoisted to the root, where its "#/$defs/..." references point
    entry = {"type": "object", "properties": {"id": {"type": "integer"}, "answer": answer},
             "required": ["id", "answer"], "additionalProperties": False}
    schema = {"title": constants.PACK_SCHEMA_NAME, "type": "object",
              "properties": {"answers": {"type": "array", "items": entry}},
              "required": ["answers"], "additionalProperties": False}
    if defs:
        schema["$defs"] = defs
    return OutputSchema(schema)


def packing_for(size: int, prefix: StaticPrefix | None, parts: int, *, structured: str, local: bool) -> int:
    """The static characters of the last message, where k rows can share one request; else a ConfigError saying why."""
    if local:
        raise ConfigError("rows_per_request is for API providers: a local model already answers rows in batches")
    if structured != constants.STRUCTURED_MODES[0]:
        raise ConfigError("rows_per_request needs structured='json_schema': the answers come back as a list "
                          "keyed by item id")
    if prefix is None or prefix.messages != parts - 1:
        raise ConfigError("rows_per_request needs a string or message template whose row values are all in its "
                          "last message (a function template, or values in earlier messages, cannot be packed)")
    if size > constants.PACK_MAX_ROWS:
        raise ConfigError(f"rows_per_request must be at most {constants.PACK_MAX_ROWS}, got {size}")
    return prefix.chars
