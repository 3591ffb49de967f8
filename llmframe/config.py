"""Process-wide defaults that llmframe.configure() changes."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from . import constants
from .plan.request import integer_at_least, positive_number


@dataclass(frozen=True)
class Settings:
    """Defaults for every call that does not pass its own."""

    cache_dir: str | None = None  # None: LLMFRAME_CACHE_DIR, else the user cache directory
    cache_size_limit: int = constants.CACHE_SIZE_LIMIT  # bytes; beyond it the oldest answers are evicted
    max_concurrency: int = constants.MAX_CONCURRENCY
    progress: bool | None = None  # None: show in notebooks and terminals, not in logs
    rpm: float | None = None  # client-side limits per (provider, model, key); None: learn them from the server
    tpm: float | None = None


_current = Settings()


def settings() -> Settings:
    """The defaults in force now."""
    return _current


def configure(*, cache_dir: str | os.PathLike | None = None, cache_size_limit: int | None = None,
              max_concurrency: int | None = None, progress: bool | None = None, rpm: float | None = None,
              tpm: float | None = None) -> Settings:
    """Change process defaults; arguments left out keep their current value."""
    global _current
    changes: dict = {}
    if cache_dir is not None:
        changes["cache_dir"] = os.fspath(cache_dir)
    if cache_size_limit is not None:
        changes["cache_size_limit"] = integer_at_least("cache_size_limit", cache_size_limit, 1)
    if max_concurrency is not None:
        changes["max_concurrency"] = integer_at_least("max_concurrency", max_concurrency, 1)
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None:
            changes[name] = positive_number(name, value)
    if progress is not None:
        changes["progress"] = bool(progress)
    _current = replace(_current, **changes)
    return _current


def default_directory() -> Path:
    """LLMFRAME_CACHE_DIR if set, else the user's cache directory (e.g. ~/.cache/llmframe)."""
    configured = os.environ.get(constants.CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(constants.CACHE_APP_NAME, appauthor=False))
