"""A loopback aiohttp server on a background thread, with its own event loop: the simulator's server core."""

from __future__ import annotations

import asyncio
import threading
from typing import TypeVar

from aiohttp import web

_Server = TypeVar("_Server", bound="LoopbackServer")


class LoopbackServer:
    """Serves the application that _app builds, on host:port (0: a free port), from start() until stop()."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self._hanging: set[asyncio.Task] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        """The application to serve, with its routes."""
        raise NotImplementedError

    def start(self: _Server, timeout: float = 10.0) -> _Server:
        """Start serving on a background thread; return once the port is listening."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="llm-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"simulator did not start within {timeout} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down gracefully and join its thread; safe to call twice."""
        thread, loop, runner = self._thread, self._loop, self._runner
        if thread is None or loop is None or runner is None:
            return
        self._thread = self._loop = self._runner = None
        try:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _listen(self) -> web.AppRunner:
        """Start listening on the current loop and record the actual port."""
        # access_log=None: per-request log formatting costs a large share of throughput.
        # handler_cancellation: a client that gives up ends its handler, so hangs do not pile up.
        app = self._app()
        app.on_shutdown.append(self._end_hangs)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, handler_cancellation=True)
        await runner.setup()
        # A large backlog keeps benchmark bursts of thousands of connections from being refused.
        site = web.TCPSite(runner, self.host, self.port, backlog=4096)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        return runner

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        """Thread body: own an event loop, serve until stop() stops the loop."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._runner = loop.run_until_complete(self._listen())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def hang(self) -> None:
        """Never answer: wait until the client disconnects or the server stops, either of which cancels us."""
        task = asyncio.current_task()
        self._hanging.add(task)
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self._hanging.discard(task)

    async def _end_hangs(self, app: web.Application) -> None:
        """Cancel hanging requests, which would otherwise hold up shutdown for its whole timeout."""
        for task in list(self._hanging):
            task.cancel()


async def drip(request: web.Request, data: bytes, headers: dict, seconds: float) -> web.StreamResponse:
    """Send the status line and the headers, then the body one byte every `seconds`."""
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)
    await response.prepare(request)
    try:
        for i in range(len(data)):
            await response.write(data[i : i + 1])
            await asyncio.sleep(seconds)
        await response.write_eof()
    except ConnectionError:  # the client gave up waiting: what a drip test expects
        pass
    return response


async def cut(request: web.Request, data: bytes, headers: dict) -> web.StreamResponse:
    """Send the status line, the headers and half the body, then drop the connection."""
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)  # so the client knows the body came short
    await response.prepare(request)
    await response.write(data[: len(data) // 2])
    if request.transport is not None:
        request.transport.close()
    return response
