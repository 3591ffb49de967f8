"""llmframe: large language models over pandas and Polars frames, cached, resumable, with progress.

    import llmframe  # registers df.llm and s.llm on pandas, and the llm namespaces on Polars
    out = df.llm.generate("Summarise: {text}", model="openai:gpt-4o-mini", output="summary")

Each face registers when its library is imported (before or after llmframe): import llmframe imports
neither pandas nor Polars itself (faces/lazy.py).
"""

from __future__ import annotations

from . import errors
from .config import configure, settings
from .faces.lazy import when_imported as _when_imported

# Placeholders now, the faces (and the engine behind them) on first use: faces/accessors.py.
_when_imported("pandas", "llmframe.faces.accessors:pandas")
_when_imported("polars", "llmframe.faces.accessors:polars")

# The rest of the surface is imported when first asked for, so `import llmframe` costs little (README "Cold start").
_LAZY = {"batches": "batch", "cancel_batches": "batch", "jobs": "engine.background", "cache_stats": "stores.manage",
         "clear_cache": "stores.manage", "copy_cache": "stores.manage", "unload": "providers.local",
         "last_report": "collect.report", "vectors": "collect.vectors", "image": "plan.media",
         "document": "plan.media"}

__version__ = "0.1.0"

__all__ = ["configure", "settings", "cache_stats", "clear_cache", "copy_cache", "batches", "cancel_batches", "jobs",
           "unload", "vectors", "errors", "last_report", "image", "document", "__version__"]


def __getattr__(name: str):
    """The names of _LAZY, imported when first asked for (llmframe.vectors needs pyarrow and numpy: import
    llmframe stays light)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'llmframe' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
