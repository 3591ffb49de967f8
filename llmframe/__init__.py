"""llmframe: large language models over pandas and Polars frames, cached, resumable, with progress.

    import llmframe  # registers df.llm and s.llm on pandas, and the llm namespaces on Polars
    out = df.llm.generate("Summarise: {text}", model="openai:gpt-4o-mini", output="summary")

Each face registers when its library is imported (before or after llmframe): import llmframe imports
neither pandas nor Polars itself (faces/lazy.py).
"""

from __future__ import annotations

from . import errors
from .batch import batches, cancel_batches
from .engine.background import jobs
from .stores.manage import cache_stats, clear_cache, copy_cache
from .config import configure, settings
from .providers.local import unload
from .collect.report import last_report
from .plan.media import document, image
from .faces.lazy import when_imported as _when_imported

_when_imported("pandas", "llmframe.faces.pandas")
_when_imported("polars", "llmframe.faces.polars")

__version__ = "0.1.0"

__all__ = ["configure", "settings", "cache_stats", "clear_cache", "copy_cache", "batches", "cancel_batches", "jobs",
           "unload", "vectors", "errors", "last_report", "image", "document", "__version__"]


def __getattr__(name: str):
    """llmframe.vectors, imported when first asked for (it needs pyarrow and numpy: import llmframe stays light)."""
    if name == "vectors":
        from .collect.vectors import vectors

        return vectors
    raise AttributeError(f"module 'llmframe' has no attribute {name!r}")
