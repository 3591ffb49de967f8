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

    from .batch import batches

    jobs = batches(args.cache_dir, refresh=args.refresh)
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    if not jobs:
        print("No batch jobs recorded.")
        return 0
    for job in jobs:
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
    from .batch import cancel_batches

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

    from .cache import UNKNOWN, cache_stats

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
    from .cache import clear_cache, parse_duration, resolve_directory

    from .errors import ConfigError

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
    removed = clear_cache(args.cache_dir, older_than=args.older_than, model=args.model)
    print(f"Removed {removed:,} cached answer{'s' if removed != 1 else ''} from {directory}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(prog="llmframe", description="Run large language models over tables of data.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a small frame through the built-in simulator twice (no API key needed)").set_defaults(
        handler=_demo
    )
    sub.add_parser("info", help="show the version, cache directory and installed providers").set_defaults(handler=_info)
    _add_cache_commands(sub)
    _add_batch_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: 0 done, 1 declined at a prompt, 2 a usage error."""
    from .errors import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        command = " ".join(filter(None, (args.command, getattr(args, "cache_command", None),
                                         getattr(args, "batches_command", None))))
        print(f"llmframe {command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
