"""`llmframe cache stats`, `clear`, `prune` and `copy`, against a diskcache directory or a PostgreSQL store."""

from __future__ import annotations

import argparse
import sys

from .text import human_bytes, iso


def add_commands(sub) -> None:
    """The cache command and its subcommands."""
    cache = sub.add_parser(
        "cache",
        help="show or clear the answer cache",
        description="Show what the answer cache holds, or remove answers from it.",
    )
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)

    stats = cache_sub.add_parser("stats", help="entries, size on disk, size limit, per-model counts and dates")
    _store_arguments(stats)
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
    _store_arguments(clear)
    _filters(clear)
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    clear.add_argument("--force", action="store_true",
                       help="reset a damaged cache (one whose database cannot be read) by deleting its files")
    clear.set_defaults(handler=_cache_clear)

    prune = cache_sub.add_parser(
        "prune", help="remove the cached answers older than an age and/or of one model",
        description="Remove the cached answers matching every filter given (--older-than and/or --model); "
                    "unlike clear, at least one filter is required, so it never empties a store by mistake.")
    _store_arguments(prune)
    _filters(prune)
    prune.set_defaults(handler=_cache_prune, yes=True, force=False)

    copy = cache_sub.add_parser(
        "copy", help="copy answers from one store to another (a directory or a postgresql:// URL)",
        description="Copy every answer of SRC into DST, streamed. Keys DST already holds are kept, so a copy "
                    "is idempotent and an interrupted one resumes where it stopped when run again. A store is "
                    "a cache directory or a postgresql:// URL (put the password in PGPASSWORD or ~/.pgpass "
                    "rather than on the command line).")
    copy.add_argument("source", metavar="SRC", help="the store to read: a cache directory or a postgresql:// URL")
    copy.add_argument("destination", metavar="DST", help="the store to write: a cache directory or a postgresql:// URL")
    copy.set_defaults(handler=_cache_copy)


def _store_arguments(parser) -> None:
    """--cache-dir and --cache-url, one or the other; neither: the store runs use."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cache-dir", metavar="DIR",
                       help="a cache directory (default: the configured one, else LLMFRAME_CACHE_URL, else "
                            "LLMFRAME_CACHE_DIR, else the user cache)")
    where.add_argument("--cache-url", metavar="URL",
                       help="a PostgreSQL store, postgresql://user@host/db (default: LLMFRAME_CACHE_URL)")


def _filters(parser) -> None:
    parser.add_argument("--older-than", metavar="AGE",
                        help="only answers stored longer ago than AGE: seconds, or 45s, 90m, 12h, 30d, 2w")
    parser.add_argument("--model", metavar="MODEL", help="only answers of this model string, e.g. openai:gpt-4o-mini")


def _target(args: argparse.Namespace):
    """The store the arguments name: --cache-url (checked to be one), --cache-dir, or None for the default."""
    if getattr(args, "cache_url", None) is not None:
        from ...cacheurl import CacheURL

        return CacheURL(args.cache_url)
    return args.cache_dir


def _cache_stats(args: argparse.Namespace) -> int:
    import json

    from ...stores.base import UNKNOWN
    from ...stores.manage import cache_stats

    stats = cache_stats(_target(args))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    limit = stats["size_limit_bytes"]
    print(f"store      {stats['store']}")
    print(f"entries    {stats['entries']:,}")
    print(f"size       {human_bytes(stats['size_bytes'])}")
    print(f"limit      {human_bytes(limit) if limit is not None else 'none (the server keeps every answer)'}")
    print(f"oldest     {iso(stats['oldest'])}")
    print(f"newest     {iso(stats['newest'])}")
    rows = [(name, f"{m['entries']:,}", iso(m["oldest"]), iso(m["newest"])) for name, m in stats["models"].items()]
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
    from ...stores.diskcache import parse_duration, reset_cache
    from ...stores.manage import clear_cache, locate

    from ...errors import CacheDamaged, ConfigError

    if args.older_than is not None:
        try:  # a typo is a usage error, found before anything is asked or removed
            parse_duration(args.older_than)
        except ConfigError:
            raise ConfigError(
                f"--older-than {args.older_than!r} is not a duration: give seconds, or a number with a unit "
                "(45s, 90m, 12h, 30d, 2w)"
            ) from None
    directory = str(locate(_target(args)))
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
        removed = clear_cache(_target(args), older_than=args.older_than, model=args.model)
    except CacheDamaged:
        if not args.force:
            raise
        reset_cache(args.cache_dir)
        print(f"Reset the damaged cache in {directory}: its database could not be read, so its files were deleted.")
        return 0
    print(f"Removed {removed:,} cached answer{'s' if removed != 1 else ''} from {directory}.")
    return 0


def _cache_prune(args: argparse.Namespace) -> int:
    from ...errors import ConfigError

    if args.older_than is None and args.model is None:
        raise ConfigError("prune needs --older-than and/or --model; to remove every answer, use llmframe cache clear")
    return _cache_clear(args)


def _cache_copy(args: argparse.Namespace) -> int:
    from ...stores.manage import copy_cache, locate

    source, destination = locate(args.source), locate(args.destination)
    shown = sys.stderr.isatty()

    def progress(copied: int, present: int) -> None:
        if shown:
            print(f"\r{copied:,} copied, {present:,} already there", end="", file=sys.stderr, flush=True)

    done = copy_cache(source, destination, progress=progress)
    if shown:
        print(file=sys.stderr)
    print(f"Copied {done['copied']:,} answer{'s' if done['copied'] != 1 else ''} from {source} to {destination} "
          f"({done['present']:,} already there).")
    return 0
