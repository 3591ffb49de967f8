"""The `llmframe` command."""

from __future__ import annotations

import argparse
import sys


def _demo(_args: argparse.Namespace) -> int:
    from .demo import main

    return main()


def _info(_args: argparse.Namespace) -> int:
    from . import __version__
    from .cache import default_directory
    from .config import settings
    from .errors import ConfigError
    from .providers import REGISTRY, provider_class

    print(f"llmframe {__version__} (Python {sys.version.split()[0]})")
    print(f"cache directory: {settings().cache_dir or default_directory()}")
    for prefix in REGISTRY:
        try:
            provider_class(prefix)
            status = "installed"
        except ConfigError as exc:
            status = str(exc)
        print(f"provider {prefix:<12} {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(prog="llmframe", description="Run large language models over tables of data.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a small frame through the built-in simulator twice (no API key needed)").set_defaults(
        handler=_demo
    )
    sub.add_parser("info", help="show the version, cache directory and installed providers").set_defaults(handler=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
