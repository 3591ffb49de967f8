"""Tools per row: one bounded loop of turns (ask, run the tools asked for, send their results back) for every provider.

Each turn is one request through attempts' retries, the rate limiter and the row's billing, so every turn
counts towards limits, usage and cost. A provider supplies only its wire format (providers/tool_wire.py).
A tool that raises, hangs past tool_timeout, is unknown or gets invalid arguments gives the model an error
result, never the run's or another row's failure; a tool only ever receives arguments from its own row's
conversation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
import pydantic_core

from .. import constants
from ..errors import redact
from ..plan.build import Check, Policy
from ..plan.request import Request, Response
from ..plan.tools import ToolCall, ToolResult, Tools
from ..providers.base import Provider
from .answers import EMPTY_ANSWER, is_empty
from .outcome import Counters

Ask = Callable[[Request], Awaitable[Response]]  # one turn: a request with retries, paced and billed

_threads: concurrent.futures.ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """The bounded pool every run's sync tools share, made on first use."""
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = concurrent.futures.ThreadPoolExecutor(constants.TOOL_THREADS, thread_name_prefix="llmframe-tool")
        return _threads


async def converse(request: Request, provider: Provider, ask: Ask, policy: Policy, counters: Counters,
                   check: Check | None, secrets: tuple[str, ...]) -> Response:
    """The row's final answer (text, or parsed when check is given) after at most max_turns turns; a failure
    that says why otherwise; either carries the row's transcript. A re-ask of an invalid answer is a turn too."""
    tools: Tools = policy.tools  # type: ignore[assignment]
    messages, transcript, invalid = list(request.messages), [], 0
    for turn in range(1, tools.max_turns + 1):
        response = await ask(Request(request.key, messages, request.params))
        if response.error is not None:
            return _with(response, transcript)
        asked, response.tool_calls = response.tool_calls, None
        if asked is None:
            if check is None:
                return _with(response.rejected(EMPTY_ANSWER) if is_empty(response) else response, transcript)
            value, problem = check(response.text)
            if problem is None:
                response.parsed = value
                return _with(response, transcript)
            counters.invalid += 1
            invalid += 1
            if invalid > policy.invalid_retries:
                return _with(response.rejected(problem), transcript)
            counters.retries += 1
            messages = [*messages, {"role": "assistant", "content": response.text or ""},
                        {"role": "user", "content": constants.CORRECTION_PROMPT.format(problem=problem)}]
            continue
        results = await asyncio.gather(*(_run(call, tools, counters, secrets) for call in asked.calls))
        transcript += [{"turn": turn, "id": r.call.id, "tool": r.call.name, "arguments": r.call.arguments,
                        "result": r.text, "error": r.error} for r in results]
        messages = [*messages, *provider.tool_messages(asked, list(results))]
    failed = Response.failure(f"no answer after max_turns={tools.max_turns}: the model was still calling tools "
                              f"({len(transcript)} tool call{'' if len(transcript) == 1 else 's'}); raise max_turns or make the tools' results more direct")
    return _with(failed, transcript)


def _with(response: Response, transcript: list) -> Response:
    """The response with the row's transcript (JSON), cached with the answer whether or not transcript=True
    asks for its column now, so that a later run asking for it finds it."""
    response.transcript = json.dumps(transcript, ensure_ascii=False, default=str)
    return response


async def _run(call: ToolCall, tools: Tools, counters: Counters, secrets: tuple[str, ...]) -> ToolResult:
    """One call: validated, run (async on the loop, sync in the shared threads) within tool_timeout, its
    result rendered and capped; every failure an error result for the model."""
    counters.tool_calls += 1
    tool = tools.get(call.name)
    if tool is None:
        problem = f"there is no tool named {call.name!r}; the tools are {', '.join(t.name for t in tools.tools)}"
        return _error(call, problem, counters)
    if call.problem is not None:
        return _error(call, call.problem, counters)
    try:
        arguments = tool.call_arguments(call.arguments)
    except (pydantic.ValidationError, TypeError) as exc:
        return _error(call, f"invalid arguments for {tool.name}: {exc}", counters)
    try:
        if tool.is_async:
            value = await asyncio.wait_for(tool.function(**arguments), tools.timeout)
        else:
            value = await _in_thread(functools.partial(tool.function, **arguments), tools.timeout)
    except asyncio.TimeoutError:
        return _error(call, f"{tool.name} took longer than tool_timeout={tools.timeout:g} s and was cut off", counters)
    except Exception as exc:  # the tool's failure is a result the model can act on, never the run's
        return _error(call, redact(f"{tool.name} raised {type(exc).__name__}: {exc}", *secrets), counters)
    return ToolResult(call, _capped(_text(value)))


async def _in_thread(call: Callable[[], Any], timeout: float) -> Any:
    """call() in the shared threads, within timeout seconds of starting: waiting for a free thread is not the
    tool's time. Past the timeout it is abandoned, not stopped (threads cannot be): its thread stays busy."""
    loop, started = asyncio.get_running_loop(), asyncio.Event()

    def run() -> Any:
        loop.call_soon_threadsafe(started.set)
        return call()

    work = loop.run_in_executor(_pool(), run)
    await started.wait()
    return await asyncio.wait_for(work, timeout)


def _error(call: ToolCall, problem: str, counters: Counters) -> ToolResult:
    counters.tool_errors += 1
    return ToolResult(call, _capped(f"error: {problem}"), error=True)


def _text(value: Any) -> str:
    """A tool's return value as the text sent back: a str as it is, anything else as JSON (pydantic's)."""
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value, fallback=str).decode()


def _capped(text: str) -> str:
    """The text within TOOL_OUTPUT_CHARS, saying how much was cut: the model's context is not the tool's to fill."""
    cap = constants.TOOL_OUTPUT_CHARS
    if len(text) <= cap:
        return text
    return f"{text[:cap]}\n[... {len(text) - cap} more characters cut: tool output is capped at {cap}]"
