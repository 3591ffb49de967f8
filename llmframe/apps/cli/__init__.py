"""The `llmframe` command: one module per command."""

from __future__ import annotations

import argparse
import sys

from . import batches, cache, info, run
from .run import GENERATE_FLAGS, generate_options

__all__ = ["GENERATE_FLAGS", "build_parser", "generate_options", "in_flags", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per job."""
    from ... import __version__

    parser = argparse.ArgumentParser(prog="llmframe", description="Run large language models over tables of data.")
    parser.add_argument("--version", action="version", version=f"llmframe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    info.add_commands(sub)
    cache.add_commands(sub)
    batches.add_commands(sub)
    run.add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: 0 done, 1 declined at a prompt or rows failed, 2 a usage error."""
    from ...errors import ConfigError, SchemaError, TemplateError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, TemplateError, SchemaError) as exc:
        command = " ".join(filter(None, (args.command, getattr(args, "cache_command", None),
                                         getattr(args, "batches_command", None))))
        print(f"llmframe {command}: error: {in_flags(exc)}", file=sys.stderr)
        return 2


def in_flags(message: object) -> str:
    """A message of the Python API in the command line's words: api_key=... is --api-key ... here."""
    import re

    from ...options import OPTIONS

    flags = {"model": "--model", "output": "--output", "errors": "--errors"}  # run's own flags for these three
    flags.update((o.name, o.flag.flag) for o in OPTIONS if o.flag is not None and "action" not in o.flag.settings)
    # Only where a message tells what to pass ("pass api_key=...", "api_key= or ..."), not a value it reports.
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, flags)) + r")=(\.\.\.|(?=[\s,;)]))")
    return pattern.sub(lambda found: flags[found.group(1)] + (" ..." if found.group(2) else ""), str(message))
