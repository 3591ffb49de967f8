"""Packed requests (rows_per_request=k): each numbered item answered by its id, as if it had been asked alone.

A packed request is the template's fixed text, the pack's instruction, then `<item id="n">` blocks, with a
json_schema response_format asking for {"answers": [{"id", "answer"}]}. The simulator answers each item with
the answer function on the request the row would have made alone (so a packed answer equals the unpacked one),
and Faults' pack_drop_rate and pack_duplicate_rate leave an item out or give it twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from .. import constants
from ..plan.packing import item_texts
from .answers import structured_format
from .faults import FaultState
from .openai_chat import json_schema_format

_INSTRUCTION = re.compile(re.escape(constants.PACK_PROMPT.split("{count}")[0]) + r"\d+")


def item_schema(body: dict) -> tuple[dict | None, dict] | None:
    """(the schema of one item's answer, None for text; the root $defs) if body is a packed request, else None."""
    structured = structured_format(body)
    if structured is None or structured[0] != "json_schema":
        return None
    schema = structured[1]
    try:
        answer = schema["properties"]["answers"]["items"]["properties"]["answer"]
        schema["properties"]["answers"]["items"]["properties"]["id"]
    except (KeyError, TypeError):
        return None
    if not isinstance(answer, dict):
        return None
    return (None if answer.get("type") == "string" else answer), schema.get("$defs", {})


def answer(body: dict, answer_fn: Callable[[dict], str], state: FaultState, found: tuple[dict | None, dict]) -> str:
    """The packed answer: each item's own answer, keyed by its id (some dropped or doubled, as the faults say)."""
    schema, defs = found
    messages = body["messages"]
    content = messages[-1].get("content") if messages else ""
    content = content if isinstance(content, str) else ""
    cut = _INSTRUCTION.search(content)
    instruction = content[: cut.start()] if cut else ""
    entries = []
    for n, text in item_texts(content):
        alone = {k: v for k, v in body.items() if k != "response_format"}
        alone["messages"] = [*messages[:-1], {**messages[-1], "content": instruction + text}]
        if schema is not None:
            alone["response_format"] = json_schema_format("item", {**schema, **({"$defs": defs} if defs else {})})
        reply = answer_fn(alone)
        value = json.loads(reply) if schema is not None else reply
        faults = state.faults
        if state.chance(faults.pack_drop_rate):
            continue
        entries.append({"id": n, "answer": value})
        if state.chance(faults.pack_duplicate_rate):
            entries.append({"id": n, "answer": value})
    return json.dumps({"answers": entries})
