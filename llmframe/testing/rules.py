"""The simulator's rules for the semantic operators' calls, which tests and notebooks can know exactly.

- A true/false question (a boolean "answer" field: filter, join): true when a phrase in double quotes in the
  prompt occurs again outside the quotes (case-insensitive). 'Does it mention "refund"? {text}' keeps the rows
  whose text says refund; 'Is "{left.name}" the product in: {right.title}?' accepts the pairs whose title
  contains the left name. A "reason" field says which phrase it found.
- A label (an enum "label" field: classify): the first label, in the set's order, that occurs in the prompt as a
  word; none: the last label. A list of labels ("labels"): every label that occurs.
- A score (an integer "score" field: top_k, rank): the row's merit, the largest whole number in the prompt
  outside quotes and not written "~N" (0 if none), clamped to 0..100; a row that says "~N" is misjudged: its
  score is N (the largest such), which its true merit need not be. A comparison ("better": "A" or "B"): the item
  of greater merit (unclamped, "~N" ignored; a tie: "A"). So a test knows both what the pointwise pass sees and
  what the pairwise refinement must find.
- A text request listing numbered rows (agg): "<n> rows", n the rows it covers: an item "<m> rows" (a partial
  answer) counts m, any other item 1; so a group's answer counts its rows whatever the fold.
Any other request gets default_answer's.
"""

from __future__ import annotations

import json
import re

from .answers import default_answer, last_user_text, structured_format

_QUOTED = re.compile(r'"([^"\n]+)"')
_NUMBER = re.compile(r"\d+")
_APPARENT = re.compile(r"~(\d+)")
_ITEM = re.compile(r"^\d+\. (.*)$", re.M)
_PARTIAL = re.compile(r"^(\d+) rows$")


def _phrases(text: str) -> tuple[list[str], str]:
    """The quoted phrases and the text without them."""
    return _QUOTED.findall(text), _QUOTED.sub(" ", text)


def merit(text: str) -> int:
    """The largest whole number in the text outside double quotes and not written "~N"; 0 if none."""
    return max(map(int, _NUMBER.findall(_APPARENT.sub(" ", _phrases(text)[1]))), default=0)


def apparent(text: str) -> int:
    """What the pointwise score sees: the largest "~N" outside double quotes, else the merit."""
    seen = _APPARENT.findall(_phrases(text)[1])
    return max(map(int, seen)) if seen else merit(text)


def verdict(text: str) -> tuple[bool, str | None]:
    """Whether a quoted phrase occurs outside the quotes, and the first that does."""
    phrases, rest = _phrases(text)
    found = next((p for p in phrases if p.lower() in rest.lower()), None)
    return found is not None, found


def labels_in(text: str, labels: list[str]) -> list[str]:
    """The labels that occur in the text as words, in the set's order."""
    return [label for label in labels if re.search(rf"(?<!\w){re.escape(label.lower())}(?!\w)", text.lower())]


def _enum(prop: dict) -> list | None:
    values = prop.get("enum") if isinstance(prop, dict) else None
    return values if isinstance(values, list) else None


def rule_answer(body: dict) -> str:
    """The answer by the rules above, else default_answer(body)."""
    text = last_user_text(body)
    structured = structured_format(body)
    if structured is None:
        items = _ITEM.findall(text)
        if items and ("\nRows:\n" in text or "Combine them" in text):
            covered = sum(int(m.group(1)) if (m := _PARTIAL.match(item)) else 1 for item in items)
            return f"{covered} rows"
        return default_answer(body)
    kind, schema = structured
    props = (schema or {}).get("properties") or {}
    if kind != "json_schema" or not isinstance(props, dict):
        return default_answer(body)
    if props.get("answer", {}).get("type") == "boolean" and _QUOTED.search(text):
        yes, found = verdict(text)
        answer: dict = {"answer": yes}
        if "reason" in props:
            answer = {"reason": f'It mentions "{found}".' if yes else "It mentions none of the quoted phrases.",
                      **answer}
        return json.dumps(answer)
    if _enum(props.get("label", {})):
        labels = _enum(props["label"])
        found = labels_in(text, labels)
        return json.dumps({"label": found[0] if found else labels[-1]})
    if _enum((props.get("labels") or {}).get("items", {})):
        return json.dumps({"labels": labels_in(text, _enum(props["labels"]["items"]))})
    if props.get("score", {}).get("type") == "integer":
        return json.dumps({"score": min(apparent(text), 100)})
    if _enum(props.get("better", {})) == ["A", "B"]:
        a, _, b = text.partition("Item B:")
        return json.dumps({"better": "B" if merit(b) > merit(a) else "A"})
    return default_answer(body)
