"""`llmframe run`: its flags, made from llmframe.options' table, and the run itself."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ... import constants, options
from ...options import Option
from ...plan.media import document, image

# generate's options with a flag of their own. Not here: --model, --output (or --schema) and --errors, which are
# the run's own arguments, and progress, which is --progress / --quiet for the whole run.
GENERATE_FLAGS: tuple[Option, ...] = tuple(o for o in options.OPTIONS if o.flag is not None)


def generate_options(args: argparse.Namespace) -> dict:
    """The generate keywords the user gave (the others keep generate's own defaults)."""
    return {o.name: _keyword(o, value) for o in GENERATE_FLAGS if (value := getattr(args, o.name, None)) is not None}


def _keyword(option: Option, value):
    """A flag's parsed value as the keyword's value."""
    flag = option.flag
    if flag.values is not None and value in flag.values:
        return flag.values[value]
    return flag.convert(value) if flag.convert else value


def _add_flag(group, option: Option) -> None:
    flag = option.flag
    if flag.values is not None and flag.convert is None:
        checks = {"choices": tuple(flag.values)}
    elif flag.values is not None:  # its words, or a text convert takes (--cache postgresql://...)
        checks = {"type": _word_or_converted(option)}
    else:
        checks = {}
    group.add_argument(flag.flag, dest=option.name, help=options.flag_help(option), **flag.settings, **checks)


def _word_or_converted(option: Option):
    """argparse's type= for a flag of words that takes other texts too: a bad one is a usage error (exit 2), whose
    message is the check's own (argparse would quote the value: a URL's password)."""
    def check(text: str) -> str:
        from ...errors import ConfigError

        if text not in option.flag.values:
            try:
                option.flag.convert(text)
            except ConfigError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return text
    return check


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


def add_command(sub) -> None:
    """The run command: prompt and model, then generate's options by group, then the run's own."""
    run = sub.add_parser(
        "run",
        help="answer a template for every row of a Parquet (or CSV, JSON Lines) file, into a Parquet file",
        description="Run a model over every row of a file, streaming: files larger than memory are fine.",
        epilog=_RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("input", metavar="INPUT", type=Path, help="a Parquet file or directory, or a CSV / JSON Lines file")
    run.add_argument("output_path", metavar="OUTPUT", type=Path, help="the Parquet file (or directory) to write")
    groups = {name: run.add_argument_group(name) for name in ("prompt and model", options.OUTPUT, options.GENERATION,
                                                                options.SENDING, options.CACHE, "run")}
    prompt = groups["prompt and model"].add_mutually_exclusive_group(required=True)
    prompt.add_argument("--template", "-t", metavar="TEXT", help='the prompt, with {column} placeholders: "Summarise: {text}"')
    prompt.add_argument("--template-file", metavar="FILE", type=Path,
                        help="the prompt in a text file; a .json file holds a list of {role, content} messages")
    for kind in ("image", "document"):
        groups["prompt and model"].add_argument(
            f"--{kind}", dest=f"{kind}_columns", action="append", default=[], metavar="COLUMN",
            help=f"a column of {kind}s (bytes, paths or URLs) sent after the template's text (repeatable)")
    groups["prompt and model"].add_argument("--model", "-m", required=True, metavar="PROVIDER:MODEL",
                                            help="e.g. openai:gpt-4o-mini, anthropic:claude-haiku-4-5")
    out = groups[options.OUTPUT]
    out.add_argument("--output", "-o", metavar="NAME",
                     help=f"the answer column's name (default: {constants.DEFAULT_OUTPUT}; not with --schema)")
    out.add_argument("--schema", metavar="MODULE:CLASS|FILE.json",
                     help="structured answers: a pydantic model (mymodule:Review, or path/to/file.py:Review) "
                          "or a JSON Schema file; each field becomes a typed column")
    out.add_argument("--errors", choices=constants.ERROR_MODES, default=constants.ERROR_MODES[0],
                     help="column: failed rows get their error in <output>_error and the run succeeds; raise: any "
                          f"failed row means no output and exit status 1 (default: {constants.ERROR_MODES[0]})")
    for option in GENERATE_FLAGS:
        _add_flag(groups[option.flag.group], option)
    g = groups["run"]
    g.add_argument("--batch-size", type=int, default=None, metavar="ROWS",
                   help=f"rows per chunk and per output row group (default: {constants.STREAM_BATCH_ROWS:,}); "
                        "memory grows with it")
    g.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    g.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary line")
    run.set_defaults(handler=_run)


def _template(args: argparse.Namespace):
    """The template of --template or --template-file, with the --image and --document columns after its text."""
    template = _text_template(args)
    media = [part(c) for part, columns in ((image, args.image_columns), (document, args.document_columns))
             for c in columns]
    if not media:
        return template
    if not isinstance(template, str):
        from ...errors import ConfigError

        raise ConfigError("--image and --document go with a text template, not a .json list of messages")
    return [template, *media]


def _text_template(args: argparse.Namespace):
    from ...errors import ConfigError

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
    from ...errors import ConfigError

    if spec.lower().endswith(".json") or (Path(spec).is_file() and ":" not in spec):
        try:
            return json.loads(Path(spec).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the JSON Schema file {spec}: {exc}") from None
    return options.loaded(spec, "--schema", "module:Class (a pydantic model) or a JSON Schema file")


def _run(args: argparse.Namespace) -> int:
    import signal

    from ...errors import BudgetExceeded, ConfigError, RunAborted
    from ...plan.request import integer_at_least
    from ..stream import Job, print_summary, run
    from . import in_flags

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
        print(f"llmframe run: error: {in_flags(exc)}; nothing written to {job.dest}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"llmframe run: interrupted; nothing written to {job.dest}. Finished answers are cached: run the "
              "same command again to go on", file=sys.stderr)
        return 130
    print_summary(job, outcome)
    return 1 if outcome.failed_raise else 0
