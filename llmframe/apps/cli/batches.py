"""`llmframe batches status` and `llmframe batches cancel`."""

from __future__ import annotations

import argparse

from .text import iso


def add_commands(sub) -> None:
    """The batches command and its subcommands."""
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

    from ...batch import batches
    from ...batch.state import BatchStateWarning

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
              f"created {iso(job['created'])}")
        for c in job["chunks"]:
            counts = f"{c['done']:,}/{c['requests']:,} done"
            if c["status"] == "collected":
                counts += f", {c['succeeded']:,} answered, {c['failed']:,} failed"
            print(f"    {c['batch_id'] or '(not created)'}  {c['state'] or c['status']}  {counts}")
    return 0


def _batches_cancel(args: argparse.Namespace) -> int:
    from ...batch import cancel_batches

    asked = cancel_batches(args.id, all=args.all, prefix=args.prefix, cache_dir=args.cache_dir)
    for batch_id in asked:
        print(f"cancelling {batch_id}")
    print(f"Asked {len(asked)} batch{'es' if len(asked) != 1 else ''} to cancel.")
    return 0
