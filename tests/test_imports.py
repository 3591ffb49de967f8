"""The import rules: import-linter's contracts (pyproject.toml), private names, a CLI without the simulator."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Imports of another llmframe module's _private names that their owners are removing (issue 18). An entry
# that no longer occurs fails the test too, so the list only shrinks.
PENDING_PRIVATE_IMPORTS: set[str] = set()


def _lint_imports() -> list[str]:
    """The lint-imports command of the environment running the tests."""
    beside = Path(sys.executable).with_name("lint-imports")
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]' (it is in the dev extra)")
    return [found]


def test_import_linter_contracts_hold():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([*_lint_imports(), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"lint-imports found broken import rules:\n{done.stdout}\n{done.stderr}"


def _private_imports(root: Path = ROOT) -> set[str]:
    """'importer: module.name' for every import of another llmframe module's _private name."""
    found = set()
    for path in sorted((root / "llmframe").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if parts[-1] == "__init__" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])]) if node.level else node.module or ""
            if not source.startswith("llmframe"):
                continue  # other packages' private names are a different risk, not an llmframe rule
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.add(f"{module}: {source}.{alias.name}")
    return found


def test_no_module_imports_another_modules_private_names():
    found = _private_imports()
    new = sorted(found - PENDING_PRIVATE_IMPORTS)
    assert not new, f"imports of other modules' _private names (make the name public, or move the code): {new}"
    gone = sorted(PENDING_PRIVATE_IMPORTS - found)
    assert not gone, f"fixed, so drop them from PENDING_PRIVATE_IMPORTS: {gone}"


def test_the_private_name_check_sees_relative_and_absolute_imports(tmp_path):
    package = tmp_path / "llmframe"
    (package / "batch").mkdir(parents=True)
    (package / "__init__.py").write_text("from .plan import __version__\n")
    (package / "batch" / "__init__.py").write_text("from . import gemini\nfrom .gemini import _own\n")
    (package / "batch" / "gemini.py").write_text(
        "from ..providers.gemini import _text, public\nfrom llmframe.plan.rows import _as_json\n"
        "from re import _parser\nfrom . import _sibling\n"
    )
    assert _private_imports(tmp_path) == {
        "llmframe.batch: llmframe.batch.gemini._own",
        "llmframe.batch.gemini: llmframe.providers.gemini._text",
        "llmframe.batch.gemini: llmframe.plan.rows._as_json",
        "llmframe.batch.gemini: llmframe.batch._sibling",
    }


def test_the_command_line_loads_without_the_simulator():
    code = ("import sys, llmframe, llmframe.apps.cli, llmframe.apps.demo; "
            "print(sorted(m for m in sys.modules if m.startswith('llmframe.testing')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "[]", "the product imports llmframe.testing only when the demo runs"
