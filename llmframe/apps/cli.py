"""The `llmframe` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import constants


def _demo(_args: argparse.Namespace) -> int:
    from .demo import main

    return main()


def _info(args: argparse.Namespace) -> int:
    if args.path is not None:
        from .provenance import describe, read

        if args.json:
            print(json.dumps([{"file": f, "rows": n, "provenance": p} for f, p, n in read(args.path)], indent=2))
        else:
            print(describe(args.path))
        return 0
    from .. import __version__
    from ..stores.diskcache import default_directory
    from ..config import settings
    from ..providers import available

    print(f"llmframe {__version__} (Python {sys.version.split()[0]})")
    print(f"cache directory: {settings().cache_dir or default_directory()}")
    for prefix, status in available().items():  # the built-ins, then the installed plugins
        print(f"provider {prefix:<12} {status}")
    return 0


def _add_cache_commands(sub) -> None:
    cache = sub.add_parser(
        "cache",
        help="show or clear the answer cache",
        description="Show what the answer cache holds, or remove answers from it.",
    )
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    directory_help = "the cache directory (default: the configured one, LLMFRAME_CACHE_DIR, or the user cache)"

    stats = cache_sub.add_parser("stats", help="entries, size on disk, size limit, per-model counts and dates")
    stats.add_argument("--cache-dir", metavar="DIR", help=directory_help)
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    stats.set_defaults(handler=_cache_stats)

    clear = cache_sub.add_parser(
        "clear",
        help="remove cached answers: all of them, or those older than an age and/or of one model",
        description=(
            "Remove cached answers. With --older-than and/or --model only the answers matching every "
            "filter go; with neither, the whole cache is cleared. Without --yes a terminal asks first; "
            "when input is not a terminal, clearing the whole cache needs --yes (filtered clears do not)."
        ),
    )
    clear.add_argument("--cache-dir", metavar="DIR", help=directory_help)
    clear.add_argument("--older-than", metavar="AGE",
                       help="only answers stored longer ago than AGE: seconds, or 45s, 90m, 12h, 30d, 2w")
    clear.add_argument("--model", metavar="MODEL", help="only answers of this model string, e.g. openai:gpt-4o-mini")
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    clear.add_argument("--force", action="store_true",
                       help="reset a damaged cache (one whose database cannot be read) by deleting its files")
    clear.set_defaults(handler=_cache_clear)


def _add_batch_commands(sub) -> None:
    batches = sub.add_parser(
        "batches",
        help="list or cancel native batch jobs (mode='batch')",
        description="List the provider batch jobs recorded in the cache directory, or cancel running ones.",
    )
    batch_sub = batches.add_subparsers(dest="batches_command", required=True)
    directory_help = "the cache directory holding the job state (default: as for `llmframe cache`)"
    status = batch_sub.add_parser("status", help="every known job: its batches, their state and request counts")
    status.add_argument("--cache-dir", metavar="DIR", help=directory_help)
    status.add_argument("--refresh", action="store_true",
                        help="ask the providers for the latest state first (needs their API keys in the environment)")
    status.add_argument("--json", action="store_true", help="print the jobs as JSON")
    status.set_defaults(handler=_batches_status)
    cancel = batch_sub.add_parser(
        "cancel",
        help="cancel running jobs: one id, --all, or --prefix P",
        description=("Cancel running batch jobs (a job id lf-..., or a provider batch id). Answers that finished "
                     "are kept: the next run of the same call collects them and resubmits only the rest. "
                     "Needs the provider's API key in the environment."),
    )
    cancel.add_argument("id", nargs="?", help="a job id (lf-...) or a provider batch id")
    cancel.add_argument("--all", action="store_true", help="every running job")
    cancel.add_argument("--prefix", metavar="P", help="the running jobs whose job or batch id starts with P")
    cancel.add_argument("--cache-dir", metavar="DIR", help=directory_help)
    cancel.set_defaults(handler=_batches_cancel)


def _batches_status(args: argparse.Namespace) -> int:
    import json
    import warnings

    from ..batch import batches
    from ..batch.state import BatchStateWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchStateWarning)  # listed below, with how to remove them
        jobs = batches(args.cache_dir, refresh=args.refresh)
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    if not jobs:
        print("No batch jobs recorded.")
        return 0
    for job in jobs:
        if job["status"] == "damaged":
            print(f"{job['id']}  damaged: {job['error']}")
            continue
        done = sum(c["done"] for c in job["chunks"])
        print(f"{job['id']}  {job['model']}  {job['status']}  {done:,}/{job['requests']:,} requests  "
              f"created {_iso(job['created'])}")
        for c in job["chunks"]:
            counts = f"{c['done']:,}/{c['requests']:,} done"
            if c["status"] == "collected":
                counts += f", {c['succeeded']:,} answered, {c['failed']:,} failed"
            print(f"    {c['batch_id'] or '(not created)'}  {c['state'] or c['status']}  {counts}")
    return 0


def _batches_cancel(args: argparse.Namespace) -> int:
    from ..batch import cancel_batches

    asked = cancel_batches(args.id, all=args.all, prefix=args.prefix, cache_dir=args.cache_dir)
    for batch_id in asked:
        print(f"cancelling {batch_id}")
    print(f"Asked {len(asked)} batch{'es' if len(asked) != 1 else ''} to cancel.")
    return 0


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _iso(timestamp: float | None) -> str:
    from datetime import datetime

    return "-" if timestamp is None else datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _cache_stats(args: argparse.Namespace) -> int:
    import json

    from ..stores.diskcache import UNKNOWN, cache_stats

    stats = cache_stats(args.cache_dir)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"directory  {stats['directory']}")
    print(f"entries    {stats['entries']:,}")
    print(f"size       {_human_bytes(stats['size_bytes'])}")
    print(f"limit      {_human_bytes(stats['size_limit_bytes'])}")
    print(f"oldest     {_iso(stats['oldest'])}")
    print(f"newest     {_iso(stats['newest'])}")
    rows = [(name, f"{m['entries']:,}", _iso(m["oldest"]), _iso(m["newest"])) for name, m in stats["models"].items()]
    if stats["unknown"]:
        rows.append((f"({UNKNOWN})", f"{stats['unknown']:,}", "-", "-"))
    if rows:
        header = ("model", "entries", "oldest", "newest")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        print()
        for r in [header, *rows]:
            print(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return 0


def _cache_clear(args: argparse.Namespace) -> int:
    from ..stores.diskcache import clear_cache, parse_duration, reset_cache, resolve_directory

    from ..errors import CacheDamaged, ConfigError

    if args.older_than is not None:
        try:  # a typo is a usage error, found before anything is asked or removed
            parse_duration(args.older_than)
        except ConfigError:
            raise ConfigError(
                f"--older-than {args.older_than!r} is not a duration: give seconds, or a number with a unit "
                "(45s, 90m, 12h, 30d, 2w)"
            ) from None
    directory = resolve_directory(args.cache_dir)
    filtered = args.older_than is not None or args.model is not None
    if args.force and filtered:
        raise ConfigError("--force resets the whole cache: it takes no --older-than or --model")
    what = " and ".join(
        part
        for part in (
            f"stored more than {args.older_than} ago" if args.older_than is not None else "",
            f"of model {args.model!r}" if args.model is not None else "",
        )
        if part
    )
    target = f"the cached answers {what} in {directory}" if filtered else f"EVERY cached answer in {directory}"
    if not args.yes:
        if sys.stdin.isatty():
            reply = input(f"Remove {target}? [y/N] ").strip().lower()
            if reply not in ("y", "yes"):
                print("Nothing removed.")
                return 1
        elif not filtered:
            print(
                f"llmframe cache clear: error: refusing to remove {target} without --yes "
                "(input is not a terminal, so there is no one to ask)",
                file=sys.stderr,
            )
            return 2
    try:
        removed = clear_cache(args.cache_dir, older_than=args.older_than, model=args.model)
    except CacheDamaged:
        if not args.force:
            raise
        reset_cache(args.cache_dir)
        print(f"Reset the damaged cache in {directory}: its database could not be read, so its files were deleted.")
        return 0
    print(f"Removed {removed:,} cached answer{'s' if removed != 1 else ''} from {directory}.")
    return 0


def _pairs(items: list[str]) -> dict:
    """KEY=VALUE arguments as a dict; each VALUE is read as JSON when it is JSON (0.5, true, [1,2]), else as text."""
    from ..errors import ConfigError

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


def _number(text: str) -> int | float:
    """A number as Python reads it: "0" is 0 and "0.0" is 0.0, so a flag makes the cache key its keyword would."""
    try:
        return int(text)
    except ValueError:
        return float(text)


_number.__name__ = "number"  # argparse's message: "invalid number value: 'abc'"


def _json_argument(flag: str, text: str):
    """Inline JSON, or the path of a JSON file."""
    from ..errors import ConfigError

    try:
        return json.loads(Path(text).read_text(encoding="utf-8") if Path(text).is_file() else text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{flag} takes JSON or a JSON file: {exc}") from None


@dataclass(frozen=True)
class _Flag:
    """One keyword of df.llm.generate on the command line."""

    keyword: str
    flag: str
    group: str
    help: str
    settings: dict = field(default_factory=dict)  # more add_argument settings: type, choices, action, metavar
    convert: Callable | None = None  # the parsed value -> generate's value


_GEN, _SEND, _CACHE, _OUT = "generation", "sending", "cache", "output columns"

# Every generate option, one row each: adding a keyword to generate is adding a row here.
GENERATE_FLAGS: tuple[_Flag, ...] = (
    _Flag("system", "--system", _GEN, "system prompt; may use {column} placeholders like the template",
          dict(metavar="TEXT")),
    _Flag("temperature", "--temperature", _GEN, "sampling temperature", dict(type=_number, metavar="T")),
    _Flag("top_p", "--top-p", _GEN, "nucleus sampling probability", dict(type=_number, metavar="P")),
    _Flag("max_tokens", "--max-tokens", _GEN, "most tokens per answer", dict(type=int, metavar="N")),
    _Flag("seed", "--seed", _GEN, "sampling seed, where the provider supports one", dict(type=int, metavar="N")),
    _Flag("stop", "--stop", _GEN, "a stop sequence (repeat for several)", dict(action="append", metavar="TEXT")),
    _Flag("params", "--param", _GEN, "any other provider parameter, e.g. --param presence_penalty=0.5 (VALUE is "
          "read as JSON, else as text; repeatable)", dict(action="append", metavar="KEY=VALUE"), _pairs),
    _Flag("missing", "--missing", _GEN, "a row with a missing value in a template column: skip it (default) or "
          "stop with an error", dict(choices=("skip", "raise"))),
    _Flag("allow_no_placeholder", "--allow-no-placeholder", _GEN, "allow a template that uses no column",
          dict(action="store_const", const=True)),
    _Flag("max_prompt_tokens", "--max-prompt-tokens", _GEN, "skip rows whose prompt is estimated above this many "
          "tokens", dict(type=int, metavar="N")),
    _Flag("mode", "--mode", _SEND, "online: one request per row now; batch: the provider's batch API (cheaper, "
          "slower); auto: let llmframe choose", dict(choices=("online", "batch", "auto"))),
    _Flag("poll_interval", "--poll-interval", _SEND, "batch mode: seconds between checks of a batch job",
          dict(type=_number, metavar="SECONDS")),
    _Flag("retry_online", "--retry-online", _SEND, "batch mode: send requests whose batch line failed through the "
          "online API in the same run", dict(action="store_const", const=True)),
    _Flag("max_cost", "--max-cost", _SEND, "a cap in USD on what the whole run may spend: no request is sent that "
          "could take it past the cap; the run then stops with status 1 and writes nothing (answers stay cached)",
          dict(type=_number, metavar="USD")),
    _Flag("prices", "--prices", _SEND, 'USD per million tokens for models genai-prices does not know, as JSON or a '
          'JSON file: {"provider:model": {"input_mtok": 0.15, "output_mtok": 0.6}}', dict(metavar="JSON|FILE"),
          lambda text: _json_argument("--prices", text)),
    _Flag("max_concurrency", "--max-concurrency", _SEND, "requests in flight (default 64)", dict(type=int, metavar="N")),
    _Flag("rpm", "--rpm", _SEND, "client-side requests per minute (default: learned from the server)",
          dict(type=_number, metavar="N")),
    _Flag("tpm", "--tpm", _SEND, "client-side tokens per minute (default: learned from the server)",
          dict(type=_number, metavar="N")),
    _Flag("max_attempts", "--max-attempts", _SEND, "attempts per request, the first included (default 6)",
          dict(type=int, metavar="N")),
    _Flag("max_failures_in_a_row", "--max-failures-in-a-row", _SEND, "stop the run after this many requests fail "
          "in a row (default 25)", dict(type=int, metavar="N")),
    _Flag("timeout", "--timeout", _SEND, "seconds a request may take (default 600)", dict(type=_number, metavar="SECONDS")),
    _Flag("max_wait", "--max-wait", _SEND, "the longest the run waits on the server: one Retry-After, or refused "
          "without an answer, before it stops (default 120)", dict(type=_number, metavar="SECONDS")),
    _Flag("api_key", "--api-key", _SEND, "the provider's API key; better, its environment variable (e.g. "
          "OPENAI_API_KEY). Never written to the output", dict(metavar="KEY")),
    _Flag("base_url", "--base-url", _SEND, "the provider's endpoint (default: its environment variable, e.g. "
          "OPENAI_BASE_URL)", dict(metavar="URL")),
    _Flag("provider_options", "--provider-option", _SEND, "a setting of the provider's SDK client, KEY=VALUE "
          "(repeatable)", dict(action="append", metavar="KEY=VALUE"), _pairs),
    _Flag("cache", "--cache", _CACHE, "on (default): answers come from and go to the cache; refresh: ask again "
          "and replace them; off: no cache", dict(choices=("on", "refresh", "off")),
          {"on": True, "refresh": "refresh", "off": False}.get),
    _Flag("cache_dir", "--cache-dir", _CACHE, "the cache directory (default: LLMFRAME_CACHE_DIR or the user cache)",
          dict(metavar="DIR")),
    _Flag("usage", "--usage", _OUT, "add per-row usage columns: tokens, cost, cached, latency, finish reason",
          dict(action="store_const", const=True)),
    _Flag("prefix", "--prefix", _OUT, "with --schema: a prefix for the field columns' names", dict(metavar="TEXT")),
    _Flag("output_mode", "--output-mode", _OUT, "with --schema: one column per field (columns, default) or one "
          "column of whole answers as JSON (object)", dict(choices=("columns", "object"))),
    _Flag("strict", "--no-strict", _OUT, "with --schema: do not ask for OpenAI's strict schema mode",
          dict(action="store_const", const=False)),
    _Flag("structured", "--structured", _OUT, "with --schema: json_schema (default) sends the schema natively; "
          "json_object sends JSON mode with the schema in the prompt, for servers that refuse json_schema",
          dict(choices=constants.STRUCTURED_MODES)),
    _Flag("invalid_retries", "--invalid-retries", _OUT, "with --schema: times an answer that does not validate is "
          "asked again (default 2)", dict(type=int, metavar="N")),
)


def generate_options(args: argparse.Namespace) -> dict:
    """The generate keywords the user gave (the others keep generate's own defaults)."""
    return {f.keyword: f.convert(value) if f.convert else value
            for f in GENERATE_FLAGS if (value := getattr(args, f.keyword, None)) is not None}


_RUN_EXAMPLES = """examples:
  llmframe run reviews.parquet out.parquet --template "Sentiment of: {text}" --model openai:gpt-4o-mini \\
      --output sentiment
  llmframe run reviews.parquet out.parquet --template-file prompt.txt --schema mymodule:Review \\
      --model gemini:gemini-2.5-flash
  llmframe run data/ out/ --template "Translate to French: {text}" --model openai:gpt-4o-mini
  llmframe info out.parquet

Input: a Parquet file, a directory of Parquet files (a dataset: one output file per input file, or one
file when OUTPUT ends in .parquet), or a .csv / .tsv / .jsonl file. The output is Parquet: the input's
columns unchanged, then the new ones, in the input's row order. It is written under a hidden name and
renamed when complete; after a crash, run the same command again: cached answers are not sent again.
Exit status: 0 done (failed rows are in the error column), 1 rows failed with --errors raise or the
run stopped, 2 bad input or options (nothing written), 130 interrupted."""


def _add_run_command(sub) -> None:
    run = sub.add_parser(
        "run",
        help="answer a template for every row of a Parquet (or CSV, JSON Lines) file, into a Parquet file",
        description="Run a model over every row of a file, streaming: files larger than memory are fine.",
        epilog=_RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("input", metavar="INPUT", type=Path, help="a Parquet file or directory, or a CSV / JSON Lines file")
    run.add_argument("output_path", metavar="OUTPUT", type=Path, help="the Parquet file (or directory) to write")
    groups = {name: run.add_argument_group(name) for name in ("prompt and model", _OUT, _GEN, _SEND, _CACHE, "run")}
    prompt = groups["prompt and model"].add_mutually_exclusive_group(required=True)
    prompt.add_argument("--template", "-t", metavar="TEXT", help='the prompt, with {column} placeholders: "Summarise: {text}"')
    prompt.add_argument("--template-file", metavar="FILE", type=Path,
                        help="the prompt in a text file; a .json file holds a list of {role, content} messages")
    groups["prompt and model"].add_argument("--model", "-m", required=True, metavar="PROVIDER:MODEL",
                                            help="e.g. openai:gpt-4o-mini, anthropic:claude-haiku-4-5")
    groups[_OUT].add_argument("--output", "-o", metavar="NAME",
                              help="the answer column's name (default: response; not with --schema)")
    groups[_OUT].add_argument("--schema", metavar="MODULE:CLASS|FILE.json",
                              help="structured answers: a pydantic model (mymodule:Review, or path/to/file.py:Review) "
                                   "or a JSON Schema file; each field becomes a typed column")
    groups[_OUT].add_argument("--errors", choices=("column", "raise"), default="column",
                              help="column (default): failed rows get their error in <output>_error and the run "
                                   "succeeds; raise: any failed row means no output and exit status 1")
    for flag in GENERATE_FLAGS:
        groups[flag.group].add_argument(flag.flag, dest=flag.keyword, help=flag.help, **flag.settings)
    g = groups["run"]
    g.add_argument("--batch-size", type=int, default=None, metavar="ROWS",
                   help="rows per chunk and per output row group (default 50,000); memory grows with it")
    g.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    g.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary line")
    run.set_defaults(handler=_run)


def _template(args: argparse.Namespace):
    from ..errors import ConfigError

    if args.template is not None:
        return args.template
    path = args.template_file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the template file {path}: {exc}") from None
    if path.suffix.lower() != ".json":
        return text.rstrip("\n")  # an editor's final newline is not part of the prompt
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON ({exc}); a .json template file holds a list of messages") from None


def _schema(spec: str):
    """A JSON Schema file, or a pydantic model named module:Class or path/to/file.py:Class."""
    import importlib
    import importlib.util
    import os

    from ..errors import ConfigError

    if spec.lower().endswith(".json") or (Path(spec).is_file() and ":" not in spec):
        try:
            return json.loads(Path(spec).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the JSON Schema file {spec}: {exc}") from None
    module_name, sep, name = spec.rpartition(":")
    if not sep or not module_name or not name:
        raise ConfigError(f"--schema {spec!r}: give module:Class (a pydantic model) or a JSON Schema file")
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
        raise ConfigError(f"--schema {spec!r}: cannot load it ({type(exc).__name__}: {exc})") from None


def _run(args: argparse.Namespace) -> int:
    import signal

    from .. import constants
    from ..errors import BudgetExceeded, ConfigError, RunAborted
    from ..plan.request import integer_at_least
    from .stream import Job, print_summary, run

    if args.schema is not None and args.output is not None:
        raise ConfigError("--output names a text column; with --schema the columns are the schema's fields "
                          "(name them with --prefix)")
    job = Job(
        source=args.input,
        dest=args.output_path,
        template=_template(args),
        model=args.model,
        output=_schema(args.schema) if args.schema is not None else (args.output or constants.DEFAULT_OUTPUT),
        output_source=args.schema,
        errors=args.errors,
        options=generate_options(args),
        batch_rows=integer_at_least("--batch-size", args.batch_size, 1) if args.batch_size is not None
        else constants.STREAM_BATCH_ROWS,
        overwrite=args.overwrite,
        progress=True if args.progress else None,
        quiet=args.quiet,
    )

    def stop(signum, _frame):  # a scheduler's SIGTERM: stop as on Ctrl-C, finished answers cached, nothing half-written
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        outcome = run(job)
    except (RunAborted, BudgetExceeded) as exc:
        print(f"llmframe run: error: {exc}; nothing written to {job.dest}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"llmframe run: interrupted; nothing written to {job.dest}. Finished answers are cached: run the "
              "same command again to go on", file=sys.stderr)
        return 130
    print_summary(job, outcome)
    return 1 if outcome.failed_raise else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(prog="llmframe", description="Run large language models over tables of data.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a small frame through the built-in simulator twice (no API key needed)").set_defaults(
        handler=_demo
    )
    info = sub.add_parser("info", help="show the version, cache directory and providers; or what made an output file",
                          description="Without PATH: the version, cache directory and installed providers. With a "
                                      "Parquet file or directory written by `llmframe run`: its provenance (template, "
                                      "model, parameters, output schema, llmframe version, run report).")
    info.add_argument("path", nargs="?", metavar="PATH", help="an output of `llmframe run`")
    info.add_argument("--json", action="store_true", help="print the provenance as JSON")
    info.set_defaults(handler=_info)
    _add_cache_commands(sub)
    _add_batch_commands(sub)
    _add_run_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: 0 done, 1 declined at a prompt or rows failed, 2 a usage error."""
    from ..errors import ConfigError, SchemaError, TemplateError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, TemplateError, SchemaError) as exc:
        command = " ".join(filter(None, (args.command, getattr(args, "cache_command", None),
                                         getattr(args, "batches_command", None))))
        print(f"llmframe {command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
