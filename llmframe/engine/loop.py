"""The one event loop llmframe runs on: a long-lived loop in a daemon thread, and the sync and async ways in.

Every run executes on that loop. That is what lets the sync `generate` work inside Jupyter (whose own
loop is already running) without nest_asyncio, and what lets Ctrl-C in the caller's thread cancel the
run while finished answers are flushed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .. import constants

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """The process's engine loop, started on first use in a daemon thread."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=serve, name="llmframe-executor", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


class Ready:
    """A run whose result is already there (the run memo answered every row): no trip to the loop for it."""

    def __init__(self, value):
        self.value = value

    async def _value(self):
        return self.value

    def __call__(self) -> Awaitable:
        return self._value()


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on the engine loop and wait; Ctrl-C cancels it and lets it clean up."""
    if isinstance(make, Ready):
        return make.value
    loop = _background_loop()
    finished = threading.Event()

    async def guarded() -> T:
        try:
            return await make()
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(guarded(), loop)
    try:
        while True:
            try:
                # A timed wait keeps the caller's thread responsive to KeyboardInterrupt everywhere.
                return future.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        future.cancel()
        finished.wait(constants.CANCEL_GRACE_SECONDS)
        raise


async def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Await a coroutine that runs on the engine loop, from any other event loop."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return await make()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))


def in_background(make: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
    """Start a coroutine on the engine loop and return at once (a background job's run)."""
    return asyncio.run_coroutine_threadsafe(make(), _background_loop())


def call_soon(callback: Callable[[], object]) -> None:
    """Call callback on the engine loop's thread, soon (what touches a running job's tasks must run there)."""
    _background_loop().call_soon_threadsafe(callback)
