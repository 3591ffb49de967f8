"""The `llmframe` command: one module per command."""

from __future__ import annotations

import argparse
import sys

from . import batches, cache, info, run
from .run import GENERATE_FLAGS, generate_options

__all__ = ["GENERATE_FLAGS", "build_parser", "generate_options", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(prog="llmframe", description="Run large language models over tables of data.")
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
        print(f"llmframe {command}: error: {exc}", file=sys.stderr)
        return 2
