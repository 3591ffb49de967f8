"""Faces register themselves when their frame library is imported, so `import llmframe` imports neither.

pandas costs about 0.4 s to import and Polars 0.15 s (measured with `python -X importtime`, README
"Polars"): a Polars user should not pay for pandas, nor a pandas user for Polars. Neither library offers
an entry point for accessors, and Python has no post-import hook (PEP 369 was withdrawn), so a finder
on sys.meta_path runs the registration right after the library's own module has executed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading

_lock = threading.Lock()
_faces: dict[str, str] = {}  # library -> the face module that registers on it, not yet imported


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a library with a face waiting, wraps its loader to import the face after it."""

    def find_spec(self, name, path, target=None):
        if name not in _faces:
            return None
        for finder in sys.meta_path:  # the spec the rest of the import system would find
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            if module.__name__ == name:  # a loader may serve other modules too
                _register(name)

        loader.exec_module = exec_module  # on this loader object only: the spec's class is untouched
        return spec


_finder = _AfterImport()


def _register(library: str) -> None:
    """Import the face waiting for this library (once), and stop watching once none waits."""
    with _lock:
        face = _faces.pop(library, None)
        if not _faces and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
    if face is not None:
        module, _, function = face.partition(":")
        found = importlib.import_module(module)
        if function:
            getattr(found, function)()


def when_imported(library: str, face: str) -> None:
    """Import the module `face` (which registers the accessors; "module:function" also calls that function)
    now if `library` is imported, else right after."""
    with _lock:
        _faces[library] = face
        if sys.modules.get(library) is None and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    if sys.modules.get(library) is not None:  # None: the import was refused, as where it is not installed
        _register(library)


class _Module:
    """A module imported on its first attribute lookup (importlib's locks make that safe across threads)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


def module(name: str) -> _Module:
    """The module `name`, imported when an attribute of it is first read (what a face needs only for some verbs)."""
    return _Module(name)
