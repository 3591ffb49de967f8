"""llmframe: large language models over pandas DataFrames, cached, resumable, with progress.

    import llmframe  # registers df.llm and s.llm
    out = df.llm.generate("Summarise: {text}", model="openai:gpt-4o-mini", output="summary")
"""

from __future__ import annotations

from .faces import pandas as _accessor  # noqa: F401  (registers the pandas accessors)
from . import errors
from .batch import batches, cancel_batches
from .stores.manage import cache_stats, clear_cache, copy_cache
from .config import configure, settings
from .providers.local import unload
from .faces.pandas_vectors import vectors

__version__ = "0.1.0"

__all__ = ["configure", "settings", "cache_stats", "clear_cache", "copy_cache", "batches", "cancel_batches", "unload",
           "vectors", "errors", "__version__"]
