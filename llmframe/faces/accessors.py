"""Placeholder accessors registered when pandas or Polars is imported; the real face is imported on first use.

The faces import the whole engine (planning, providers, stores: ~70 ms after pandas), which `import llmframe`
should not cost a user who imports it at the top of a script. A placeholder is a class whose construction
(`df.llm`) or attribute lookup (`pd.DataFrame.llm.generate`) imports the face module, which puts its own
classes in the placeholders' place (`clear`), so from then on `pd.DataFrame.llm` is the real accessor.
"""

from __future__ import annotations

import importlib
import os
import threading
import time

from .. import constants

_PLACEHOLDERS: set[type] = set()
_preloading: list[threading.Thread] = []


class _Lazy(type):
    """The metaclass of a placeholder: class attribute lookups go to the real accessor class."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._real(), name)


def _placeholder(module: str, name: str) -> type:
    """A stand-in for module.name: constructing it or reading its attributes imports the module."""

    def real() -> type:
        return getattr(importlib.import_module(module), name)

    def new(cls, obj):
        return real()(obj)

    placeholder = _Lazy(name, (), {"__new__": new, "_real": staticmethod(real), "__module__": module,
                                   "__doc__": f"llmframe's accessor ({module}.{name}), imported on first use."})
    _PLACEHOLDERS.add(placeholder)
    return placeholder


def clear(*owners: type) -> None:
    """Remove the placeholders from these classes, so the face registers its real accessors without a warning."""
    for owner in owners:
        if owner.__dict__.get("llm") is not None and _is_placeholder(owner):
            delattr(owner, "llm")


def _is_placeholder(owner: type) -> bool:
    try:
        found = object.__getattribute__(owner, "llm")
    except AttributeError:
        return False
    held = (getattr(found, "_accessor", None), getattr(found, "_ns", None))  # pandas' and Polars' descriptors
    return any(isinstance(h, type) and h in _PLACEHOLDERS for h in held)


def preload(face: str) -> None:
    """Import the lean transport's HTTP library (constants.PRELOAD_MODULES), then the face, on a daemon thread.

    The user's thread is in user code meanwhile, holding no import lock, so at worst it waits for a module
    the thread is importing; a fork waits for the thread first (a child must not inherit a half-held lock).
    """
    if _preloading or os.environ.get(constants.PRELOAD_ENV_VAR, "1") == "0":
        return

    def run() -> None:
        time.sleep(constants.PRELOAD_DELAY_SECONDS)  # not holding the GIL while the importing code goes on
        for module in (*constants.PRELOAD_MODULES, face):
            try:
                importlib.import_module(module)
            except Exception:  # not installed, or broken: the first call that needs it says so
                pass

    thread = threading.Thread(target=run, name="llmframe-preload", daemon=True)
    _preloading.append(thread)
    os.register_at_fork(before=thread.join)
    thread.start()


def pandas() -> None:
    """Register df.llm and s.llm placeholders (faces/pandas.py)."""
    import pandas as pd

    face = "llmframe.faces.pandas"
    preload(face)
    if "llm" not in pd.DataFrame.__dict__:
        pd.api.extensions.register_dataframe_accessor("llm")(_placeholder(face, "DataFrameAccessor"))
    if "llm" not in pd.Series.__dict__:
        pd.api.extensions.register_series_accessor("llm")(_placeholder(face, "SeriesAccessor"))


def polars() -> None:
    """Register the Polars placeholders (faces/polars.py): DataFrame, Series, Expr and LazyFrame namespaces."""
    import polars as pl

    face = "llmframe.faces.polars"
    preload(face)
    for owner, register, name in ((pl.DataFrame, pl.api.register_dataframe_namespace, "DataFrameNamespace"),
                                  (pl.Series, pl.api.register_series_namespace, "SeriesNamespace"),
                                  (pl.Expr, pl.api.register_expr_namespace, "ExprNamespace"),
                                  (pl.LazyFrame, pl.api.register_lazyframe_namespace, "LazyFrameNamespace")):
        if "llm" not in owner.__dict__:
            register("llm")(_placeholder(face, name))
