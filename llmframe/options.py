"""One table of generate's options: name, type, default, check, command-line flag, help.

The faces' signatures are checked against it (tests/test_options.py), plan() validates through its
checks, `llmframe run` makes its flags from it, docstrings and the README's options table are made from it.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import constants
from .cost.prices import check_prices
from .errors import ConfigError, TemplateError
from .plan.request import generation_params, integer_at_least, positive_number

REQUIRED = inspect.Parameter.empty  # the default of an option the caller must give

# The groups of `llmframe run --help`, in the order they are shown after the prompt and model.
OUTPUT, GENERATION, SENDING, CACHE = "output columns", "generation", "sending", "cache"


def number(text: str) -> int | float:
    """A number as Python reads it: "0" is 0 and "0.0" is 0.0, so a flag makes the cache key its keyword would."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def pairs(items: list[str]) -> dict:
    """KEY=VALUE arguments as a dict; each VALUE is read as JSON when it is JSON (0.5, true, [1,2]), else as text."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def json_argument(flag: str) -> Callable[[str], Any]:
    """A converter of the flag's text: inline JSON, or the path of a JSON file."""
    def convert(text: str) -> Any:
        try:
            return json.loads(Path(text).read_text(encoding="utf-8") if Path(text).is_file() else text)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{flag} takes JSON or a JSON file: {exc}") from None
    return convert


def loaded(spec: str, flag: str, wanted: str) -> Any:
    """The object a flag names as module:name or path/to/file.py:name (modules beside the data are found)."""
    import importlib
    import importlib.util
    import os
    import sys

    module_name, sep, name = spec.rpartition(":")
    if not sep or not module_name or not name:
        raise ConfigError(f"{flag} {spec!r}: give {wanted}")
    try:
        if module_name.endswith(".py"):
            loader = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if loader is None or not Path(module_name).is_file():
                raise ImportError(f"no file {module_name}")
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:  # as `python -m` would: modules beside the data are found
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
        return getattr(module, name)
    except (ImportError, AttributeError, SyntaxError) as exc:
        raise ConfigError(f"{flag} {spec!r}: cannot load it ({type(exc).__name__}: {exc})") from None


def _tool_functions(specs: list[str]) -> list:
    """--tool's module:function (or path/to/file.py:function) texts, as the functions."""
    return [loaded(spec, "--tool", "module:function or path/to/file.py:function") for spec in specs]


@dataclass(frozen=True)
class Flag:
    """An option on `llmframe run`: its flag, help group and argparse settings."""

    flag: str
    group: str
    settings: dict = field(default_factory=dict)  # more add_argument settings: type, choices, action, metavar
    convert: Callable | None = None  # the parsed value -> the keyword's value (with values: a text not among them)
    values: Mapping[str, Any] | None = None  # the flag's words for the keyword's values (its choices, unless convert)
    help: str | None = None  # the command line's own wording, where the option's does not fit a flag


@dataclass(frozen=True)
class Option:
    """One keyword of generate."""

    name: str
    type: str  # the annotation, as the faces spell it
    default: Any
    help: str  # one line: what the option means (Markdown: `code` spans)
    check: Callable[[str, Any], Any] | None = None  # (name, value) -> the value to use; ConfigError if bad
    flag: Flag | None = None
    means: str | None = None  # the default in words, where None stands for something (`the provider's`)
    see: str | None = None  # the README section that says more


def _choice(choices: tuple, spelled: str | None = None, error: type[Exception] = ConfigError) -> Callable:
    """A check that the value is one of choices; True is not 1 and 1 is not True."""
    def check(name: str, value: Any) -> Any:
        if not any(value is c or (isinstance(value, type(c)) and not isinstance(c, bool) and value == c)
                   for c in choices):
            raise error(f"{name} must be {spelled or f'one of {choices}'}, got {value!r}")
        return value
    return check


def _cache(name: str, value: Any) -> Any:
    """cache=: True, False, "refresh", or a postgresql:// URL (carried as a CacheURL: its password never shows)."""
    from .cacheurl import CacheURL, is_url, redacted

    if isinstance(value, CacheURL):
        return value
    if is_url(value):
        return CacheURL(value)
    if isinstance(value, str) and "://" in value:
        raise ConfigError(f"{name} must be True, False, 'refresh' or a postgresql:// URL, got {redacted(value)!r}")
    return _choice((True, False, "refresh"), "True, False, 'refresh' or a postgresql:// URL")(name, value)


def _cache_url(text: str) -> Any:
    """--cache's text other than on/refresh/off: a postgresql:// URL, carried as a CacheURL; ConfigError if not one."""
    from .cacheurl import CacheURL, is_url, redacted

    if is_url(text):
        return CacheURL(text)
    shown = redacted(text) if "://" in text or "@" in text else text  # a mistyped URL keeps its password hidden
    raise ConfigError(f"expected on, refresh, off or a postgresql:// URL, got {shown!r}")


def _at_least(low: int, *, optional: bool = False) -> Callable:
    """A check that the value is an integer >= low (or None, when optional)."""
    return lambda name, value: None if optional and value is None else integer_at_least(name, value, low)


def _generation(name: str, value: Any) -> Any:
    """A generation parameter, checked (and normalised) as generation_params does; params= as it was given."""
    normalised = generation_params(**{name: value})
    return value if name == "params" else normalised.get(name)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


def _callback(name: str, value: Any) -> Callable | None:
    """on_row=, on_progress=, on_done=: a function or None."""
    if value is not None and not callable(value):
        raise ConfigError(f"{name} must be a function (or None), got {value!r}")
    return value


def _prices(_name: str, value: Any) -> Any:
    return None if value is None else check_prices(value)


_FLAG = _choice((True, False), "True or False")


def _cascade_flags(entries: list[str]) -> list:
    """--cascade's MODEL[=THRESHOLD] words as cascade= entries."""
    out: list = []
    for entry in entries:
        model, sep, threshold = entry.partition("=")
        try:
            out.append((model, float(threshold)) if sep else model)
        except ValueError:
            raise ConfigError(f"--cascade takes MODEL or MODEL=THRESHOLD (a number), got {entry!r}") from None
    return out


def _context(name: str, value: Any) -> Any:
    """context=: None, or a non-empty text."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"context= must be a non-empty string (a document or instructions), got {value!r}")
    return value


def _text_or_file(value: str) -> str:
    """--context's TEXT, or @FILE: that file's text."""
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--context {value}: cannot read {value[1:]!r}: {exc.strerror}") from None
    return value


def _cascade(name: str, value: Any) -> Any:
    """cascade=: None, or a list of models (the cascade checks each entry when it runs)."""
    if value is not None and (not isinstance(value, (list, tuple)) or not value):
        raise ConfigError(f'{name} must be a list of models, e.g. ["openai:gpt-4o"], got {value!r}')
    return value
_N, _SECONDS = dict(type=int, metavar="N"), dict(type=number, metavar="SECONDS")
_ON = dict(action="store_const", const=True)
_PROVIDERS = "the provider's"
_BATCH = "Batch mode: the providers' half-price batch APIs"
_MEDIA = "Images and documents: llmframe.image and llmframe.document"
_TOOLS = "Tools per row: the model calls your Python functions"


def _tools(name: str, value: Any) -> Any:
    """tools=: None or a list of functions (plan.tools makes their schemas, with the loop's other options)."""
    if value is not None and (callable(value) or not isinstance(value, (list, tuple))):
        raise ConfigError(f"{name} must be a list of functions, got {type(value).__name__}")
    return value

OPTIONS: tuple[Option, ...] = (
    Option("model", "str | Provider", REQUIRED, '`"provider:model"`, e.g. `"openai:gpt-4o-mini"`, or a `Provider` '
           "instance, used as it is", see="Models and keys"),
    Option("output", "Any", constants.DEFAULT_OUTPUT, "name of the answer column (and of the returned Series), or a "
           "pydantic model / JSON Schema dict: one typed column per field",
           see="Structured outputs: a pydantic model in, typed columns out"),
    Option("errors", "str", constants.ERROR_MODES[0], '`"column"`: failed rows get a missing value and their error in '
           '`{output}_error`; `"raise"`: raise `RunAborted` after the run (finished answers are cached)',
           check=_choice(constants.ERROR_MODES)),
    Option("prefix", "str", "", "structured outputs: a prefix for the field columns' names", check=_string,
           flag=Flag("--prefix", OUTPUT, dict(metavar="TEXT"))),
    Option("output_mode", "str", constants.OUTPUT_MODES[0], 'structured outputs: `"columns"`, one column per '
           'field; `"object"`, one column of whole answers (validated objects; JSON text in a file)',
           check=_choice(constants.OUTPUT_MODES), flag=Flag("--output-mode", OUTPUT,
                                                            dict(choices=constants.OUTPUT_MODES))),
    Option("strict", "bool", True, "structured outputs: ask for OpenAI's strict schema mode", check=_FLAG,
           flag=Flag("--no-strict", OUTPUT, dict(action="store_const", const=False),
                     help="structured outputs: do not ask for OpenAI's strict schema mode")),
    Option("structured", "str", constants.STRUCTURED_MODES[0], 'structured outputs: `"json_schema"` sends the '
           'schema natively; `"json_object"` sends JSON mode with the schema in the prompt, for servers that '
           "refuse json_schema", check=_choice(constants.STRUCTURED_MODES),
           flag=Flag("--structured", OUTPUT, dict(choices=constants.STRUCTURED_MODES))),
    Option("invalid_retries", "int", constants.INVALID_ANSWER_RETRIES, "structured outputs: times an answer that "
           "does not validate is asked again", check=_at_least(0), flag=Flag("--invalid-retries", OUTPUT, _N)),
    Option("dtype_backend", "str | None", None, 'the new columns\' dtypes, as pandas\' readers take it: '
           '`"numpy_nullable"` (`string`, `Int64`, ...), `"pyarrow"` (`ArrowDtype`, zero-copy); pandas faces only',
           check=_choice(constants.DTYPE_BACKENDS, "None, 'numpy_nullable' or 'pyarrow'"),
           means="pandas' defaults", see="Output"),
    Option("usage", "bool", False, "add per-row usage columns: tokens, cost, cached, latency, finish reason",
           check=_FLAG, flag=Flag("--usage", OUTPUT, _ON), see="Usage, cost and sweeps"),
    Option("system", "str | None", None, "system prompt; may use `{column}` placeholders like the template",
           flag=Flag("--system", GENERATION, dict(metavar="TEXT"))),
    Option("temperature", "float | None", None, "sampling temperature, 0 to 2", check=_generation,
           flag=Flag("--temperature", GENERATION, dict(type=number, metavar="T")), means=_PROVIDERS),
    Option("top_p", "float | None", None, "nucleus sampling probability, 0 to 1", check=_generation,
           flag=Flag("--top-p", GENERATION, dict(type=number, metavar="P")), means=_PROVIDERS),
    Option("max_tokens", "int | None", None, "most tokens per answer", check=_generation,
           flag=Flag("--max-tokens", GENERATION, _N), means=_PROVIDERS),
    Option("seed", "int | None", None, "sampling seed, where the provider supports one", check=_generation,
           flag=Flag("--seed", GENERATION, _N), means=_PROVIDERS),
    Option("stop", "str | list[str] | None", None, "a stop sequence, or a list of them", check=_generation,
           flag=Flag("--stop", GENERATION, dict(action="append", metavar="TEXT"),
                     help="a stop sequence; repeat for several"), means=_PROVIDERS),
    Option("reasoning_effort", "str | None", None, 'reasoning models (OpenAI, Azure): `"minimal"`, `"low"`, '
           '`"medium"`, `"high"` (or `"none"`, `"xhigh"` where the model has them); its reasoning tokens are billed '
           'as output', check=_generation, flag=Flag("--reasoning-effort", GENERATION,
                                                     dict(choices=constants.REASONING_EFFORTS)),
           means=_PROVIDERS, see="Reasoning models and the Responses API"),
    Option("params", "dict | None", None, 'any other parameter the provider accepts, e.g. '
           '`{"presence_penalty": 0.5}`', check=_generation,
           flag=Flag("--param", GENERATION, dict(action="append", metavar="KEY=VALUE"), pairs,
                     help="any other provider parameter, e.g. --param presence_penalty=0.5 (VALUE is read as JSON, "
                          "else as text; repeatable)")),
    Option("missing", "str", constants.MISSING_MODES[0], 'a row with a missing value in a template column: '
           '`"skip"` leaves it unanswered, `"raise"` stops the call before anything is sent',
           check=_choice(constants.MISSING_MODES, error=TemplateError),
           flag=Flag("--missing", GENERATION, dict(choices=constants.MISSING_MODES)), see="Bad input"),
    Option("allow_no_placeholder", "bool", False, "allow a template that uses no `{column}`",
           flag=Flag("--allow-no-placeholder", GENERATION, _ON)),
    Option("max_prompt_tokens", "int | None", None, "rows whose prompt is estimated above this many tokens are "
           "skipped, not sent", check=_at_least(1, optional=True), flag=Flag("--max-prompt-tokens", GENERATION, _N)),
    Option("tools", "list | None", None, "Python functions (sync or async) the model may call while it answers "
           "each row; their schemas come from signatures, type hints and docstrings", check=_tools, means="none",
           see=_TOOLS, flag=Flag("--tool", GENERATION, dict(action="append", metavar="MODULE:FUNCTION"),
                                 _tool_functions, help="a Python function the model may call while it answers "
                                 "each row, as module:function or path/to/file.py:function (repeatable)")),
    Option("max_turns", "int", constants.TOOL_MAX_TURNS, "tools: model turns per row at most (each is a request); "
           "a row still calling tools after them fails", check=_at_least(1),
           flag=Flag("--max-turns", GENERATION, _N)),
    Option("tool_timeout", "float", constants.TOOL_TIMEOUT_SECONDS, "tools: seconds one tool call may take; past "
           "it the model gets an error result", check=lambda n, v: positive_number(n, v),
           flag=Flag("--tool-timeout", GENERATION, _SECONDS)),
    Option("transcript", "bool", False, "tools: add a column `<output>_transcript` with the row's tool calls and "
           "results (JSON)", check=_FLAG, flag=Flag("--transcript", GENERATION, _ON)),
    Option("tools_version", "str | None", None, "tools: part of the cache key; change it when the tools' data "
           "or behaviour changes", check=lambda n, v: None if v is None else _string(n, v),
           flag=Flag("--tools-version", GENERATION, dict(metavar="TEXT"))),
    Option("cache", "bool | str", True, '`True`: read and write; `"refresh"`: ignore hits, write new answers; '
           '`False`: neither; `"postgresql://..."`: read and write that shared store', check=_cache,
           flag=Flag("--cache", CACHE, dict(metavar="on|refresh|off|URL"), convert=_cache_url,
                     values={"on": True, "refresh": "refresh", "off": False},
                     help="on: answers come from and go to the cache; refresh: ask again and replace them; "
                          "postgresql://...: that shared store (its password is best in PGPASSWORD or ~/.pgpass: "
                          "a command line is visible to other users); off: no cache"), see="The cache"),
    Option("cache_dir", "str | None", None, "where the cache lives", flag=Flag("--cache-dir", CACHE,
                                                                              dict(metavar="DIR")),
           means=f"`{constants.CACHE_ENV_VAR}`, else the user cache directory"),
    Option("max_concurrency", "int | None", None, "requests in flight", check=_at_least(1, optional=True),
           flag=Flag("--max-concurrency", SENDING, _N), means=f"`{constants.MAX_CONCURRENCY}`"),
    Option("rpm", "float | None", None, "client-side requests per minute for this provider, model and key",
           check=positive_number, flag=Flag("--rpm", SENDING, dict(type=number, metavar="N")),
           means="learned from the server", see="Rate limits, retries and failures"),
    Option("tpm", "float | None", None, "client-side tokens per minute for this provider, model and key",
           check=positive_number, flag=Flag("--tpm", SENDING, dict(type=number, metavar="N")),
           means="learned from the server"),
    Option("max_attempts", "int", constants.MAX_ATTEMPTS, "attempts per request, the first included",
           check=_at_least(1), flag=Flag("--max-attempts", SENDING, _N)),
    Option("max_failures_in_a_row", "int", constants.BREAKER_FAILURES, "the circuit breaker: this many requests "
           "failing in a row stop the run", check=_at_least(1), flag=Flag("--max-failures-in-a-row", SENDING, _N)),
    Option("timeout", "float", constants.REQUEST_TIMEOUT_SECONDS, "seconds one attempt may take in all: a server "
           "trickling its reply is cut off too", check=positive_number, flag=Flag("--timeout", SENDING, _SECONDS)),
    Option("max_wait", "float", constants.MAX_WAIT_SECONDS, "seconds a run waits on the server's word: one "
           "`Retry-After` or limit reset, or refused without an answer, before it stops", check=positive_number,
           flag=Flag("--max-wait", SENDING, _SECONDS)),
    Option("progress", "bool | None", None, "`True` / `False`; auto shows it in notebooks and terminals, never in "
           "logs or CI", means="auto"),
    Option("api_key", "str | None", None, "the provider's API key (better: its environment variable); never "
           "written to the cache, an output or a message", flag=Flag("--api-key", SENDING, dict(metavar="KEY")),
           means="from the environment, e.g. `OPENAI_API_KEY`"),
    Option("base_url", "str | None", None, "the provider's endpoint, e.g. a local server's",
           flag=Flag("--base-url", SENDING, dict(metavar="URL")), means="from the environment, e.g. `OPENAI_BASE_URL`"),
    Option("provider_options", "dict | None", None, 'passed to the SDK client, e.g. `{"organization": "..."}`; '
           "local models take their own", see="Local models: transformers and vLLM",
           flag=Flag("--provider-option", SENDING, dict(action="append", metavar="KEY=VALUE"), pairs,
                     help="a setting of the provider's SDK client, KEY=VALUE (repeatable)")),
    Option("api", "str | None", None, 'OpenAI and Azure: `"chat"` (chat completions) or `"responses"` (the '
           "Responses API, online and in batch mode)", check=_choice((None, *constants.OPENAI_APIS)),
           flag=Flag("--api", SENDING, dict(choices=constants.OPENAI_APIS)), means='`"chat"`',
           see="Reasoning models and the Responses API"),
    Option("mode", "str", constants.BATCH_MODES[0], '`"online"`: one request per row now; `"batch"`: the '
           'provider\'s batch API (half price, slower); `"auto"`: batch from '
           f"{constants.BATCH_AUTO_MIN_REQUESTS:,} distinct requests", check=_choice(constants.BATCH_MODES),
           flag=Flag("--mode", SENDING, dict(choices=constants.BATCH_MODES)), see=_BATCH),
    Option("poll_interval", "float | None", None, "batch mode: seconds between polls once the first quick polls "
           f"are done; `{constants.BATCH_POLL_ENV_VAR}` sets it too", check=positive_number,
           flag=Flag("--poll-interval", SENDING, _SECONDS), means=f"`{constants.BATCH_POLL_SECONDS:g}`"),
    Option("retry_online", "bool", False, "batch mode: send requests whose batch line failed through the online "
           "API in the same run", check=_FLAG, flag=Flag("--retry-online", SENDING, _ON)),
    Option("prices", "dict | None", None, '`{"provider:model": {"input_mtok": ..., "output_mtok": ..., '
           '"cache_read_mtok": ..., "cache_write_mtok": ...}}`: USD per million tokens (the cached-input read and '
           "prompt-cache write rates optional), for models genai-prices does not know (or to override it)",
           check=_prices,
           flag=Flag("--prices", SENDING, dict(metavar="JSON|FILE"), json_argument("--prices"),
                     help='USD per million tokens for models genai-prices does not know, as JSON or a JSON file: '
                          '{"provider:model": {"input_mtok": 0.15, "output_mtok": 0.6}}')),
    Option("max_cost", "float | None", None, "USD cap: no request is sent that could take the run's spending past it; "
           "raises `BudgetExceeded` with the finished answers", check=positive_number,
           flag=Flag("--max-cost", SENDING, dict(type=number, metavar="USD"),
                     help="a cap in USD on what the whole run may spend: no request is sent that could take it "
                          "past the cap; the run then stops with status 1 and writes nothing (answers stay cached)")),
    Option("max_image_side", "int | None", None, "media: downscale images (with Pillow) so their longer side is at "
           "most this many pixels before sending", check=_at_least(1, optional=True), means="none",
           see=_MEDIA, flag=Flag("--max-image-side", SENDING, dict(type=int, metavar="PIXELS"))),
    Option("fetch_urls", "bool", False, "media: download http(s) URLs in media columns and send their bytes, "
           f"for providers that take none by URL (at most {constants.FETCH_URL_MAX_BYTES // 2**20} MB and "
           f"{constants.FETCH_URL_TIMEOUT_SECONDS:g} s each)", check=_FLAG, see=_MEDIA,
           flag=Flag("--fetch-urls", SENDING, _ON)),
    Option("prompt_cache", "bool", True, "let the provider's prompt cache serve the prompts' shared start: "
           "OpenAI's `prompt_cache_key`, Anthropic's `cache_control`; never part of the cache key", check=_FLAG,
           flag=Flag("--no-prompt-cache", SENDING, dict(action="store_const", const=False)), see="Paying less"),
    Option("rows_per_request", "int", 1, "rows sent together in one request as numbered items, the template's "
           "fixed text once; each row's answer is checked and cached on its own", check=_at_least(1),
           flag=Flag("--rows-per-request", SENDING, _N), see="Paying less"),
    Option("cascade", "list | None", None, "models to send a row on to when the one before is unsure of it: "
           '`["openai:gpt-4o"]` or `[("openai:gpt-4o", 0.9)]` (the confidence below which rows go on); needs an '
           "output= with a `confidence` field", check=_cascade, means="none", see="Paying less",
           flag=Flag("--cascade", SENDING, dict(action="append", metavar="MODEL[=THRESHOLD]"), _cascade_flags,
                     help="a model to send the rows the one before is unsure of on to, optionally with the "
                          "confidence below which they go (repeatable, in order)")),
    Option("calibrate", "int", 0, "cascade: run this many sample rows on every model first and choose the "
           "thresholds for 95% agreement with the last model", check=_at_least(0), see="Paying less",
           flag=Flag("--calibrate", SENDING, _N)),
    Option("context", "str | None", None, "a long document or instructions every row shares: a user message of its "
           "own after the system prompt, where providers' prompt caches serve it (Gemini: an explicit cached "
           "content for the run); its text is sent as it is (braces are no placeholders)", check=_context,
           flag=Flag("--context", GENERATION, dict(metavar="TEXT|@FILE"), _text_or_file), see="Paying less"),
    Option("on_row", "Callable | None", None, "called with each finished row (`RowEvent`: row, index, answer, "
           "error, usage, cached), on a thread of its own", check=_callback, see="Run callbacks"),
    Option("on_progress", "Callable | None", None, "called with the run's counts (a dict) as it goes, at most "
           f"every {constants.PROGRESS_REFRESH_SECONDS:g} s, and at the end", check=_callback),
    Option("on_done", "Callable | None", None, "called with the run report when the run ends", check=_callback),
)

BY_NAME = {o.name: o for o in OPTIONS}
CALLBACKS = frozenset({"on_row", "on_progress", "on_done"})  # functions: no command-line flag can give one

# embed's own options, then generate's that embed shares (with its own defaults for model= and output=).
_EMBEDDING = "Embeddings: a vector column, search, similarity join and de-duplication"
EMBED_OWN: tuple[Option, ...] = (
    Option("dimensions", "int | None", None, "length of each vector, for models that can shorten theirs "
           "(OpenAI's text-embedding-3, Gemini's output_dimensionality)", check=_at_least(1, optional=True),
           means="the model's", see=_EMBEDDING),
    Option("task_type", "str | None", None, 'what the vectors are for, where the provider asks (Gemini: '
           '`"RETRIEVAL_DOCUMENT"`, `"RETRIEVAL_QUERY"`, `"SEMANTIC_SIMILARITY"`, ...)', means="none"),
    Option("truncate", "bool", False, "cut an input longer than the model takes, instead of failing its row "
           "before sending", check=_FLAG),
    Option("batch_size", "int | None", None, "most inputs per request", check=_at_least(1, optional=True),
           means="the provider's most (OpenAI 2,048, Gemini 100)"),
)
_EMBED_SHARED = ("model", "output", "errors", "dtype_backend", "usage", "missing", "allow_no_placeholder", "cache",
                 "cache_dir", "max_concurrency", "rpm", "tpm", "max_attempts", "max_failures_in_a_row", "timeout", "max_wait",
                 "progress", "api_key", "base_url", "provider_options", "mode", "poll_interval", "retry_online", "prices",
                 "max_cost")
_EMBED_DEFAULTS = {"model": constants.DEFAULT_EMBEDDING_MODEL, "output": constants.DEFAULT_EMBEDDING_OUTPUT}
# The face's own options: how a face builds its frame from the core's Arrow columns, never planned or keyed.
FACE_ONLY = frozenset({"dtype_backend"})
# What a caller passes on through **options (Ray's generate, sweep, `llmframe run`): all but the three they take
# themselves and the face's own (their results are not a pandas face's frame).
PASSED_ON = frozenset(BY_NAME) - {"model", "output", "errors"} - FACE_ONLY
PLANNED = frozenset(BY_NAME) - {"model"} - FACE_ONLY  # what plan() takes: model= comes resolved, as its target


def _embed_options() -> tuple[Option, ...]:
    shared = [o for o in OPTIONS if o.name in _EMBED_SHARED]
    shared = [dataclasses.replace(o, default=_EMBED_DEFAULTS[o.name], type="str" if o.name == "output" else o.type)
              if o.name in _EMBED_DEFAULTS else o for o in shared]
    return (shared[0], shared[1], *EMBED_OWN, *shared[2:])


EMBED_OPTIONS = _embed_options()  # df.llm.embed's keywords, in order
EMBED_BY_NAME = {o.name: o for o in EMBED_OPTIONS}


def embed_keywords(values: Mapping[str, Any]) -> dict[str, Any]:
    """embed's keywords from a face method's locals(), each through its check; unknown ones are refused."""
    unknown = sorted(values.get("unknown") or {})
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} of embed; valid options are {sorted(EMBED_BY_NAME)}")
    return {o.name: o.check(o.name, values[o.name]) if o.check else values[o.name] for o in EMBED_OPTIONS
            if o.name in values}


def check_names(options: Mapping[str, Any], valid: frozenset[str] = PASSED_ON) -> None:
    """ConfigError for keywords that are no option of generate (or not among valid)."""
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; valid options are {sorted(valid)}")


def planned(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option plan() takes, as given or the table's default, through its check; unknown keywords refused."""
    check_names(given, PLANNED)
    return checked({o.name: given.get(o.name, o.default) for o in OPTIONS if o.name in PLANNED})


def checked(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every option in values, through its row's check, in the table's order; ConfigError (TemplateError) if bad."""
    return {o.name: o.check(o.name, values[o.name]) if o.check else values[o.name] for o in OPTIONS
            if o.name in values}


def keywords(values: Mapping[str, Any]) -> dict[str, Any]:
    """generate's keywords from a face method's locals(); those it caught in **unknown are refused."""
    check_names(values.get("unknown") or {})
    return {name: values[name] for name in BY_NAME if name in values}


def _plain(text: str) -> str:
    """Markdown's `code` spans as plain text."""
    return text.replace("`", "")


def _literal(value: Any) -> str:
    """A default as Python spells it; 600.0 as 600."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if isinstance(value, str) else repr(value)


_OWN = object()  # default_text's default: the option's own


def default_text(option: Option, default: Any = _OWN, *, markdown: bool = False) -> str:
    """A default of the option (its own unless given) in words: `6`, `"response"`, the provider's, none, required."""
    default = option.default if default is _OWN else default
    if default is REQUIRED:
        return "required"
    if default is None or (default == option.default and option.means is not None):
        words = option.means or "none"
        return words if markdown else _plain(words)
    return f"`{_literal(default)}`" if markdown else _literal(default)


def flag_help(option: Option) -> str:
    """The help of an option's flag: its meaning, then its default as the command line spells it."""
    flag = option.flag
    assert flag is not None
    text = flag.help or re.sub(r'`"([^"`]*)"`', r"\1", option.help)  # `"batch"` is spelled batch on the command line
    if flag.settings.get("action") == "store_const":
        default = None  # a switch: its default is not to give it
    elif flag.values is not None:
        default = next(word for word, value in flag.values.items() if value is option.default)
    elif option.default is None and option.means is None or option.default == "":
        default = None
    else:
        default = default_text(option)
        default = default.strip('"') if isinstance(option.default, str) else default
    return _plain(text if default is None else f"{text} (default: {default})").replace("%", "%%")


def _anchor(title: str) -> str:
    """GitHub's anchor of a README heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def markdown(table: Iterable[Option] = OPTIONS) -> str:
    """The README's options table (generate's; or another, such as EMBED_OWN)."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for o in table:
        meaning = o.help + (f" (see [{o.see.split(':')[0]}](#{_anchor(o.see)}))" if o.see else "")
        rows.append(f"| `{o.name}` | {default_text(o, markdown=True)} | {meaning.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def documented(func: Callable | None = None, *, names: Iterable[str] | None = None, **helps: str) -> Callable:
    """A decorator: the docstring gains a line per option, with its default and meaning.

    names: the options listed (default: the function's keyword-only parameters that are options);
    helps: a meaning of this function's own for an option, by name.
    """
    def decorate(f: Callable) -> Callable:
        parameters = inspect.signature(f).parameters
        known = {**EMBED_BY_NAME, **BY_NAME}  # generate's options, and embed's own
        listed = list(names) if names is not None else [
            p.name for p in parameters.values() if p.kind is p.KEYWORD_ONLY and p.name in known]
        lines = ["Options (default in parentheses):"]
        for name in listed:
            option = known[name]
            default = parameters[name].default if name in parameters else option.default
            lines.append(_doc_line(f"{name} ({default_text(option, default)}): {_plain(helps.get(name, option.help))}"))
        f.__doc__ = inspect.cleandoc(f.__doc__ or "") + "\n\n" + "\n".join(lines)
        return f
    return decorate(func) if func is not None else decorate


@functools.lru_cache(maxsize=None)
def _doc_line(text: str) -> str:
    """One option's line of a docstring, wrapped; cached, as the faces' docstrings share most lines."""
    return textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="      ")


def template_only_positional(f: Callable) -> Callable:
    """A face's verb called with more than the template positionally (generate(template, "openai:m")): a
    TypeError that names the fix instead of Python's bare argument count. The signature is f's (__wrapped__)."""
    def refuse(args: tuple) -> None:
        if len(args) > 2:  # self, template
            given = ", ".join(repr(a) for a in args[2:])
            first = "models" if "models" in inspect.signature(f).parameters else "model"
            raise TypeError(f"{f.__name__}() takes only the template positionally; pass the rest by keyword, e.g. "
                            f".llm.{f.__name__}(template, {first}={args[2]!r}) (got {given} positionally)")

    if inspect.iscoroutinefunction(f):
        @functools.wraps(f)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            refuse(args)
            return await f(*args, **kwargs)
        return call_async

    @functools.wraps(f)
    def call(*args: Any, **kwargs: Any) -> Any:
        refuse(args)
        return f(*args, **kwargs)
    return call
