"""Tools per row: the user's Python functions as JSON-schema tool declarations, checked before anything is sent.

A Tool is one function with its schema (from its signature, type hints and docstring, made by pydantic) and
the pydantic model that validates the arguments a model sends. Tools are the run's set, with its loop's
bounds; their key material (names, schemas, tools_version) goes into every cache key of the run.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import constants
from ..errors import ConfigError

if TYPE_CHECKING:
    import pydantic  # imported where a tool is made: a run without tools= does not pay for it (~15 ms)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: it holds a function and a dict
class Tool:
    """One function the model may call: its name, description, JSON schema and argument validator."""

    name: str
    function: Callable
    description: str
    parameters: dict  # JSON Schema of the arguments object
    arguments: type[pydantic.BaseModel]  # validates (and converts) the arguments a model sends
    is_async: bool

    @property
    def spec(self) -> dict:
        """The declaration every provider's wire format is made from: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def call_arguments(self, given: Any) -> dict:
        """The keyword arguments of a call, validated and converted (a pydantic model's parameter gets the
        model); pydantic.ValidationError or TypeError when the model sent something else."""
        if not isinstance(given, dict):
            raise TypeError(f"arguments must be a JSON object, got {type(given).__name__}")
        checked = self.arguments.model_validate(given)
        return {name: getattr(checked, name) for name in type(checked).model_fields}


@dataclass(frozen=True, eq=False)
class Tools:
    """The tools of a run and the bounds of each row's loop."""

    tools: tuple[Tool, ...]
    max_turns: int = constants.TOOL_MAX_TURNS
    timeout: float = constants.TOOL_TIMEOUT_SECONDS
    transcript: bool = False
    version: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {t.name: t for t in self.tools})

    def get(self, name: str) -> Tool | None:
        """The tool of this name, or None (a model may name one that does not exist)."""
        return self._by_name.get(name)  # type: ignore[attr-defined]

    @property
    def specs(self) -> list[dict]:
        return [t.spec for t in self.tools]

    def key_material(self) -> dict:
        """What of the tools goes into the cache keys: names, descriptions, schemas and tools_version."""
        return {"tools": self.specs, "version": self.version}

    def turn_tokens(self, prompt: int, output: int, turns: int | None = None) -> tuple[int, int]:
        """(input, output) tokens of a row over `turns` turns (default max_turns): each turn re-sends the
        declarations and the conversation so far, every earlier answer at its output limit and every tool
        result at its cap (chars / 4)."""
        turns = self.max_turns if turns is None else turns
        prompt = prompt + len(json.dumps(self.specs)) // constants.CHARS_PER_TOKEN  # never in place: an array
        result = constants.TOOL_OUTPUT_CHARS // constants.CHARS_PER_TOKEN
        return turns * prompt + turns * (turns - 1) // 2 * (output + result), turns * output


def tools_of(functions: Any, *, max_turns: int, timeout: float, transcript: bool, version: str | None) -> Tools:
    """The run's Tools from tools=; ConfigError naming the function (and parameter) that cannot be a tool."""
    if callable(functions) or not isinstance(functions, Sequence) or isinstance(functions, str):
        raise ConfigError(f"tools must be a list of functions, got {type(functions).__name__}")
    if not functions:
        raise ConfigError("tools is empty: pass tools=[fn, ...], or leave it out")
    made = [tool_of(f) for f in functions]
    names = [t.name for t in made]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"two tools are named {', '.join(map(repr, twice))}: the model calls a tool by its name, "
                          "so each needs its own (rename one, or wrap it in a function of another name)")
    return Tools(tuple(made), max_turns, timeout, transcript, version)


def tool_of(function: Any) -> Tool:
    """One function as a Tool; ConfigError when it cannot be one (naming the parameter at fault)."""
    if not callable(function) or isinstance(function, type):
        raise ConfigError(f"tools: {function!r} is not a function")
    name = getattr(function, "__name__", None)
    if not isinstance(name, str) or not re.match(constants.TOOL_NAME_PATTERN, name):
        raise ConfigError(f"tools: {name or function!r} cannot be a tool's name (letters, digits, _ and - only, at most 64): "
                          "use a def with such a name instead of a lambda or partial")
    try:
        signature = inspect.signature(function)
        hints = _hints(function, signature)
    except NameError as exc:  # a string annotation naming a type the function's module does not define
        raise ConfigError(f"{_unresolved(name, signature, exc)} cannot be resolved ({exc}); define the type at "
                          "module level, where the tool's annotations are looked up") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tool {name}: its signature cannot be read ({exc})") from None
    import pydantic

    described = _docstring(function)
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        where = f"tool {name}, parameter {parameter.name!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ConfigError(f"{where}: *args and **kwargs have no JSON schema; name each argument")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise ConfigError(f"{where}: positional-only, but a model passes arguments by name")
        if parameter.name not in hints:
            raise ConfigError(f"{where} has no type hint: annotate it (e.g. `{parameter.name}: str`) so its "
                              "JSON schema can be made")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name],
                                  pydantic.Field(default, description=described["params"].get(parameter.name)))
    try:
        model = pydantic.create_model(f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
        schema = model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        bad = _first_bad(fields)
        raise ConfigError(f"tool {name}, parameter {bad!r}: its type has no JSON schema ({exc.__class__.__name__}); "
                          "use JSON types, pydantic models, dataclasses or TypedDicts") from None
    schema.pop("title", None)
    return Tool(name, function, described["description"], schema, model,
                inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(getattr(function, "__call__", None)))


def _hints(function: Callable, signature: inspect.Signature) -> dict:
    """The parameters' type hints, resolved; a return type that cannot be resolved is no matter (it is not sent)."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except NameError:
        annotations = {p.name: p.annotation for p in signature.parameters.values() if p.annotation is not p.empty}
        holder = types.SimpleNamespace(__annotations__=annotations)
        return typing.get_type_hints(holder, globalns=getattr(function, "__globals__", {}), include_extras=True)


def _unresolved(name: str, signature: inspect.Signature, exc: NameError) -> str:
    """The parameter (or return type) whose annotation names what is undefined, in words."""
    missing = getattr(exc, "name", None) or ""
    for parameter in signature.parameters.values():
        if isinstance(parameter.annotation, str) and missing and missing in parameter.annotation:
            return f"tool {name}, parameter {parameter.name!r}: its type hint {parameter.annotation!r}"
    return f"tool {name}: a type hint"


def _first_bad(fields: dict) -> str:
    """The first parameter whose type pydantic cannot make a schema of."""
    import pydantic

    for parameter, (hint, _) in fields.items():
        try:
            pydantic.TypeAdapter(hint).json_schema()
        except Exception:  # noqa: BLE001 - any failure names this parameter
            return parameter
    return next(iter(fields), "?")


def _docstring(function: Callable) -> dict:
    """The description (the docstring's text before its sections) and each parameter's, from the docstring."""
    doc = inspect.getdoc(function) or ""
    try:
        import docstring_parser
    except ImportError:  # pragma: no cover - a dependency; without it the whole docstring describes the tool
        return {"description": doc, "params": {}}
    parsed = docstring_parser.parse(doc)
    text = "\n\n".join(p for p in (parsed.short_description, parsed.long_description) if p)
    return {"description": text or doc, "params": {p.arg_name: p.description for p in parsed.params if p.description}}


def planned(checked: dict, kind: Any, transcript_column: str, columns: Sequence) -> Tools | None:
    """The run's Tools from generate's checked options (None without tools=); ConfigError for a provider or
    mode that cannot call them, or a transcript column the frame has. kind: the provider class
    (plan.target.ProviderKind, and tool_calls)."""
    if checked["tools"] is None:
        return None
    if checked["transcript"] and transcript_column in columns:
        raise ConfigError(f"the frame already has a column {transcript_column!r}, where transcript=True puts the "
                          "tool calls: rename it, or pass output= (or prefix=) to name the new columns otherwise")
    tools = tools_of(checked["tools"], max_turns=checked["max_turns"], timeout=checked["tool_timeout"],
                     transcript=checked["transcript"], version=checked["tools_version"])
    if not getattr(kind, "tool_calls", False):
        local = " (for a local model: serve it where tool calls are parsed, e.g. `vllm serve <model> " \
            "--enable-auto-tool-choice --tool-call-parser hermes`, and use openai:<model> with base_url=)" \
            if getattr(kind, "local_groups", False) else ""
        raise ConfigError(f"the {kind.name} provider cannot call tools: use an openai:, anthropic: or gemini: "
                          f"model, or an OpenAI-compatible server whose model calls functions{local}")
    if checked["mode"] == "batch":
        raise ConfigError("tools need a conversation per row (call, result, answer), which a native batch job "
                          "cannot hold: use mode='online' (submit(..., mode='online') runs it in the background)")
    return tools


@dataclass
class ToolCall:
    """One call the model asked for: its id (echoed in the result), the tool's name and the arguments sent."""

    id: str
    name: str
    arguments: Any  # as decoded from the reply; problem says why they could not be
    problem: str | None = None


@dataclass
class ToolTurn:
    """A reply that asks for tools: the assistant's message as the provider's messages spell it, and its calls."""

    message: dict
    calls: list[ToolCall]


@dataclass
class ToolResult:
    """What a call gave, as sent back to the model: its text (capped) and whether it is an error."""

    call: ToolCall
    text: str
    error: bool = False
