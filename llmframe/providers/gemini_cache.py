"""context= on Gemini: one explicit cached content for the run (caches.create), named by every row's request.

The plan marks a run whose leading messages (the system prompt and context=) are long enough for Gemini's
documented minimum (Provider.prompt_cache_params); the first request that needs it makes the cached content,
the others wait for it and then send only their own messages with `cached_content`. Its TTL is extended while
the run goes on and it is deleted when the run ends, however it ends (the provider's aclose). Where it cannot be
made (a server error, a model without caching), the rows send the context inline, as without it: the cache
changes what is billed, never an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from typing import Any

from google.genai import types

from .. import constants
from ..errors import ProviderError


class ContextCache:
    """One run's cached content on Gemini: made once, on the loop, and deleted by close()."""

    def __init__(self, client_of: Any, model: str, sent: Any):
        self._client_of, self._model, self._sent = client_of, model, sent  # the provider's client, its error mapping
        self._made: asyncio.Task | None = None
        self._renewed = 0.0
        self._renewing: asyncio.Task | None = None

    async def name(self, system: str | None, contents: list[types.Content]) -> str | None:
        """The cached content's name, made from these on first use; None where it could not be made."""
        if self._made is None:
            self._made = asyncio.ensure_future(self._create(system, contents))
        try:
            name = await asyncio.shield(self._made)
        except ProviderError:
            return None
        ttl = constants.GEMINI_CONTEXT_CACHE_TTL_SECONDS
        if time.monotonic() - self._renewed > ttl / 2 and (self._renewing is None or self._renewing.done()):
            self._renewed = time.monotonic()  # a long run: the cache outlives it only if its TTL is extended
            self._renewing = asyncio.ensure_future(self._extend(name))
        return name

    async def _create(self, system: str | None, contents: list[types.Content]) -> str:
        config = types.CreateCachedContentConfig(contents=contents, system_instruction=system,
                                                 ttl=f"{constants.GEMINI_CONTEXT_CACHE_TTL_SECONDS}s",
                                                 display_name="llmframe context=")
        try:
            made = await self._sent(self._client_of().aio.caches.create(model=self._model, config=config))
        except ProviderError as exc:
            warnings.warn(f"Gemini context cache not made ({exc}); the rows send context= inline",
                          RuntimeWarning, stacklevel=1)
            raise
        self._renewed = time.monotonic()
        return made.name

    async def _extend(self, name: str) -> None:
        config = types.UpdateCachedContentConfig(ttl=f"{constants.GEMINI_CONTEXT_CACHE_TTL_SECONDS}s")
        with contextlib.suppress(Exception):  # a failed extension leaves the TTL as it was
            await self._client_of().aio.caches.update(name=name, config=config)

    async def close(self) -> None:
        """Delete the cached content, if one was made (it would be billed for storage until its TTL ran out)."""
        made, self._made = self._made, None
        if self._renewing is not None and not self._renewing.done():
            self._renewing.cancel()
        if made is None:
            return
        with contextlib.suppress(BaseException):  # one still being made is waited for, so it is deleted too
            await made
        if made.cancelled() or made.exception() is not None:
            return
        with contextlib.suppress(Exception):
            await self._client_of().aio.caches.delete(name=made.result())

