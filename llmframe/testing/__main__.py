"""Run the simulator in the foreground: python -m llmframe.testing [--port N] [--latency S] [--rpm N] ..."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time

from .faults import Faults
from .simulator import Simulator


def _error_rate(text: str) -> tuple[int, float]:
    """Parse STATUS=P, as in 503=0.01."""
    status, sep, p = text.partition("=")
    try:
        if sep:
            return int(status), float(p)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected STATUS=P, like 503=0.01, not {text!r}")


def _seconds_or_none(text: str) -> float | None:
    """Parse seconds, or "none" for no header."""
    return None if text.lower() == "none" else float(text)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m llmframe.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds to wait before each answer")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long")
    parser.add_argument("--rpm", type=int, help="requests per minute allowed per API key")
    parser.add_argument("--tpm", type=int, help="tokens per minute allowed per API key")
    parser.add_argument("--burst-seconds", type=float, default=60.0, help="seconds of a limit spendable at once")
    parser.add_argument(
        "--error-rate",
        type=_error_rate,
        action="append",
        default=[],
        metavar="STATUS=P",
        help="repeatable; 503=0.01 answers 1%% with a 503",
    )
    parser.add_argument(
        "--retry-after", type=_seconds_or_none, default=0.05, help='seconds advised by injected 429/503, or "none"'
    )
    parser.add_argument(
        "--invalid-json-rate", type=float, default=0.0, help="share of structured answers that are not valid JSON"
    )
    parser.add_argument(
        "--schema-violation-rate", type=float, default=0.0, help="share of json_schema answers that break the schema"
    )
    parser.add_argument(
        "--refuse-format", action="append", default=[], choices=("text", "json_object", "json_schema"),
        help="repeatable; answer requests with this response_format type with HTTP 500, as llama.cpp's Python "
        "server answers json_schema",
    )
    parser.add_argument("--seed", type=int, help="seed for the fault draws")
    parser.add_argument("--answer", choices=("digest", "tutorial"), default="digest",
                        help="digest: a digest of the prompt (default_answer); tutorial: the demo's and notebooks' "
                             "model, which answers sentiment prompts with a keyword rule (tutorial_answer)")
    args = parser.parse_args(argv)
    try:
        args.faults = Faults(
            rpm=args.rpm, tpm=args.tpm, burst_seconds=args.burst_seconds, error_rates=dict(args.error_rate),
            retry_after=args.retry_after, invalid_json_rate=args.invalid_json_rate,
            schema_violation_rate=args.schema_violation_rate, refused_formats=frozenset(args.refuse_format),
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def _serve(args: argparse.Namespace) -> None:
    """Serve until a signal, the time limit, or the death of the parent process."""
    # No request log: nothing here can read it, and it would grow for the whole run.
    answer = None
    if args.answer == "tutorial":
        from .notebook import tutorial_answer as answer
    sim = Simulator(latency=args.latency, host=args.host, port=args.port, log=False, faults=args.faults,
                    answer=answer)
    runner = await sim._listen()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: fall back to KeyboardInterrupt
            pass
    parent = os.getppid()
    deadline = time.monotonic() + args.max_seconds
    print(f"READY {sim.base_url}", flush=True)
    try:
        # Poll once a second: a server orphaned by a crashed test run must not live on.
        while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
            try:
                await asyncio.wait_for(stop.wait(), min(1.0, max(0.0, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                pass
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parse(argv)
    run = asyncio.run
    try:  # uvloop is faster when present, but never required
        import uvloop

        run = uvloop.run
    except (ImportError, AttributeError):
        pass
    try:
        run(_serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
