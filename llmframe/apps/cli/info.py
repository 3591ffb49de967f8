"""`llmframe demo` and `llmframe info`."""

from __future__ import annotations

import argparse
import json
import sys


def _demo(_args: argparse.Namespace) -> int:
    from ..demo import main

    return main()


def _info(args: argparse.Namespace) -> int:
    if args.path is not None:
        from ..provenance import describe, read

        if args.json:
            print(json.dumps([{"file": f, "rows": n, "provenance": p} for f, p, n in read(args.path)], indent=2))
        else:
            print(describe(args.path))
        return 0
    from ... import __version__
    from ...stores.manage import locate
    from ...providers import available, not_installed

    print(f"llmframe {__version__} (Python {sys.version.split()[0]})")
    print(f"cache: {locate()}")  # a directory, or the shared store's URL without its password
    for prefix, status in available().items():  # the built-ins, then the installed plugins
        print(f"provider {prefix:<12} {status}")
    for extra, needs in EXTRAS.items():
        missing = not_installed(needs)
        status = f"not installed ({', '.join(missing)}): pip install 'llmframe[{extra}]'" if missing else "installed"
        print(f"extra    {extra:<12} {status}")
    return 0


# The extras that are no provider's, module -> pip name (tests/test_first_hour.py checks them against pyproject.toml).
EXTRAS: dict[str, dict[str, str]] = {
    "notebook": {"ipywidgets": "ipywidgets"},
    "plot": {"matplotlib": "matplotlib"},
    "tiktoken": {"tiktoken": "tiktoken"},
    "ray": {"ray": "ray[data]"},  # a top-level name: find_spec("ray.data") would import ray (seconds)
}


def add_commands(sub) -> None:
    """The demo and info commands."""
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
