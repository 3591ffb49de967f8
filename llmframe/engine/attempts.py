"""One request, start to finish: paced by the limiter, retried as the server asks, re-asked when invalid or empty."""

from __future__ import annotations

import asyncio
import random
import time

from .. import constants
from ..errors import ProviderError, RunAborted, redact
from ..plan.build import Check, Policy
from ..plan.request import Request, Response
from ..providers.base import Provider
from .answers import EMPTY_ANSWER, is_empty
from .outcome import Counters
from .ratelimit import Limiter, Patience, estimate_tokens, format_seconds, retry_after


class _Billing:
    """One request's provider, as its attempts see it, counting the tokens of every reply, kept or not:
    re-asked invalid answers, empty ones, malformed replies with a usage; the provider bills them all."""

    __slots__ = ("_provider", "tokens")

    def __init__(self, provider: Provider):
        self._provider = provider
        self.tokens = (0, 0, 0, 0)  # input, output, cached input, cache-write

    def __getattr__(self, name: str):
        return getattr(self._provider, name)  # everything but answer is the provider's own

    async def answer(self, request: Request) -> Response:
        """The provider's answer (within its deadline); its tokens, or those a failed reply reports, are counted."""
        try:
            response = await self._provider.answer(request)
        except ProviderError as exc:
            self._add(*exc.billed)
            raise
        self._add(response.input_tokens, response.output_tokens, response.cached_input_tokens,
                  response.cache_write_tokens)
        return response

    def _add(self, input_tokens: int, output_tokens: int, cached: int, written: int = 0) -> None:
        total = self.tokens
        self.tokens = (total[0] + input_tokens, total[1] + output_tokens, total[2] + cached, total[3] + written)

    def bill(self, response: Response) -> Response:
        """The final response (an answer or a failure) with every attempt's tokens."""
        (response.input_tokens, response.output_tokens, response.cached_input_tokens,
         response.cache_write_tokens) = self.tokens
        return response


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: spread retries out instead of synchronising them."""
    return random.uniform(0, min(constants.BACKOFF_CAP_SECONDS, constants.BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


def _correction(request: Request, answer: str | None, problem: str) -> Request:
    """The request as first asked, plus the latest invalid answer and what was wrong with it: models mostly fix it.

    A long answer is sent back cut to its head and tail, so re-asks stay within the model's context.
    """
    answer, cap = answer or "", constants.CORRECTION_ANSWER_CHARS
    if len(answer) > cap:
        answer = f"{answer[: cap // 2]}\n[... {len(answer) - cap} characters cut ...]\n{answer[-(cap // 2):]}"
    follow_up = [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": constants.CORRECTION_PROMPT.format(problem=problem)},
    ]
    return Request(request.key, [*request.messages, *follow_up], request.params)


async def billed_answer(request: Request, provider: Provider, limiter: Limiter, policy: Policy, counters: Counters,
                        check: Check | None, secrets: tuple[str, ...], patience: Patience) -> Response:
    """_answer, carrying the tokens of every billed attempt; an empty text answer is asked again once.

    An empty answer that claims to be whole (finish reason stop) is the row's failure, never cached:
    a server or gateway hiccup more often than the model's answer, so one more try usually settles it.
    A structured run's empty answer is an invalid one instead, re-asked by _answer.
    """
    billed: Provider = _Billing(provider)  # type: ignore[assignment]
    if policy.tools is not None:  # tools=: a loop of turns, each one asked (and billed) as below
        from .toolloop import converse

        async def ask(turn: Request) -> Response:
            return await _answer(turn, billed, limiter, policy, counters, None, secrets, patience)

        return billed.bill(await converse(request, billed, ask, policy, counters, check, secrets))  # type: ignore[attr-defined]
    response = await _answer(request, billed, limiter, policy, counters, check, secrets, patience)
    tries = 1
    while check is None and is_empty(response):
        if tries >= min(constants.EMPTY_ANSWER_RETRIES + 1, policy.max_attempts):
            response = response.rejected(EMPTY_ANSWER + (f" (after {tries} attempts)" if tries > 1 else ""))
            break
        tries += 1
        counters.retries += 1
        response = await _answer(request, billed, limiter, policy, counters, check, secrets, patience)
    return billed.bill(response)  # type: ignore[attr-defined]


def _estimate(messages: list[dict], provider: Provider, max_tokens: int | None) -> float:
    """The tokens the limiter reserves for a request: its text / 4, its images and documents by the provider's
    rules (cost/media.py), and its output allowance."""
    chars = 0
    for m in messages:
        content = m.get("content") or ""
        if not isinstance(content, str):  # a list of parts: text and media
            from ..cost.media import prompt_tokens

            return prompt_tokens(getattr(provider, "name", ""), messages) + (max_tokens or constants.OUTPUT_TOKENS_GUESS)
        chars += len(content)
    return estimate_tokens(chars, max_tokens)


async def _answer(request: Request, provider: Provider, limiter: Limiter, policy: Policy, counters: Counters,
                  check: Check | None, secrets: tuple[str, ...], patience: Patience) -> Response:
    """One request with retries: every attempt paced by the limiter, every wait as long as the server asked.

    With check, an answer that does not validate is asked again (up to policy.invalid_retries times).
    """
    estimate = _estimate(request.messages, provider, policy.max_tokens)
    attempt = invalid = unconnected = 0
    asked = request  # every re-ask is built on the request as first asked, not on the re-ask before it
    while True:
        attempt += 1
        await limiter.acquire(estimate, patience)
        counters.attempts += 1
        started = time.perf_counter()
        try:
            response = await provider.answer(request)
            response.latency = time.perf_counter() - started  # the answering attempt only: no queue or backoff
            patience.answered()
        except ProviderError as exc:
            limiter.learn(exc.headers)
            unconnected += not exc.connected
            if exc.status == 401:
                raise RunAborted(f"the provider refused the API key ({exc}); every row would fail, so the run "
                                 "stopped. Check the key (api_key= or the provider's environment variable)") from None
            if exc.quota:
                raise RunAborted(f"the provider says the account's quota or credit is spent ({exc}); every row "
                                 "would fail, so the run stopped. Check the plan and billing details; finished "
                                 "answers are cached") from None
            if exc.status in constants.POOL_PAUSE_STATUSES:
                patience.refused(str(exc))
            if not exc.retryable or attempt >= policy.max_attempts:
                counters.failed_to_connect += unconnected == attempt  # no attempt reached a server: never sent
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                return Response.failure(f"{exc}{suffix}")
            asked = retry_after(exc.headers)
            wait = asked if asked is not None else min(backoff(attempt), policy.max_wait)
            why = (f"the server asked to wait {format_seconds(wait)} s" if asked is not None
                   else f"backing off {format_seconds(wait)} s after HTTP {exc.status}")
            counters.retries += 1
            if exc.status == 429:
                counters.rate_limited += 1
            if exc.status in constants.POOL_PAUSE_STATUSES:
                patience.check(wait, f"{why} ({exc})")  # a wait too long stops the run: the pool itself would wait
                limiter.pause(wait, why)  # the limiter holds this worker, and all others, for the cool-down
            elif patience.beyond(wait):  # this row's own wait: only this row gives up
                return Response.failure(f"{exc} ({why}, beyond max_wait={format_seconds(policy.max_wait)} s)")
            else:
                await asyncio.sleep(wait)
            continue
        except Exception as exc:  # an unexpected failure is this row's, never the run's
            return Response.failure(redact(f"{type(exc).__name__}: {exc}", *secrets))
        if response.headers:
            limiter.learn(response.headers)
            response.headers = None  # about a kilobyte a reply: a million rows must not keep them
        limiter.settle(estimate, response.input_tokens + response.output_tokens)
        if check is None:
            return response
        value, problem = check(response.text)
        if problem is None:
            response.parsed = value
            return response
        counters.invalid += 1
        invalid += 1
        if invalid > policy.invalid_retries:
            return Response.failure(f"{problem} ({invalid} answers)" if invalid > 1 else problem)
        counters.retries += 1
        request = _correction(asked, response.text, problem)
