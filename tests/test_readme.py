"""Every code block of README.md runs as pasted, twice: the second time on the cache the first one filled.

The convention (README.md's Development section says it too):
- ```python blocks are executed; the blocks under one heading share one namespace, in order, as cells of
  one notebook (a heading starts afresh). Top-level `await` works, as in a notebook.
- ```bash blocks are run by bash -e in the same working directory, with `llmframe` on PATH.
- Blocks that name a real provider run against the loopback simulator: the providers' own environment
  variables (OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_..., GOOGLE_GEMINI_BASE_URL, GEMINI_API_KEY)
  point at it, as llmframe.testing.notebook_setup does. Nothing reaches the network.
- A block that cannot run here is marked, on the line before its fence, `<!-- no-run: why -->`.
- Other languages (toml, text diagrams) are not code to run.
- The first screen (the blocks before the first `## ` heading) also runs in a fresh process with no API key
  and no provider endpoint in the environment.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmframe.testing import Simulator, tutorial_answer
from llmframe.testing.notebook import CACHE_ENV, PROVIDER_ENV

README = Path(__file__).resolve().parent.parent / "README.md"
RUN_LANGUAGES = {"python", "bash", "sh", "shell"}
NO_RUN = re.compile(r"<!--\s*no-run:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    heading: str  # the nearest heading above: blocks under one heading share a namespace
    source: str
    skip: str | None  # the no-run reason, or None
    first_screen: bool  # before the first "## " heading

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.language}"


def blocks(text: str) -> list[Block]:
    """The README's fenced blocks, each with its heading and its no-run mark."""
    found, lines = [], text.splitlines()
    heading, first_screen, i = "", True, 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence is None:
            if line.startswith("#"):
                heading = line
                first_screen = first_screen and not line.startswith("## ")
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = NO_RUN.search(before)
        found.append(Block(i + 1, fence.group(1), heading, "\n".join(lines[i + 1:end]) + "\n",
                           mark.group(1) if mark else None, first_screen))
        i = end + 1
    return found


ALL = blocks(README.read_text(encoding="utf-8"))
RUN = [b for b in ALL if b.language in RUN_LANGUAGES and b.skip is None]


def run_python(block: Block, namespace: dict) -> None:
    """Run a block as a notebook cell: top-level await allowed."""
    code = compile(block.source, f"README.md:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # noqa: S307  (the README's own code)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def run_shell(block: Block, cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(README.parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(["bash", "-e", "-c", block.source], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"README.md:{block.line} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def readme_env(tmp_path_factory):
    """One simulator and one cache for both passes (the second finds the first's answers); the providers'
    environment variables point at it; a working directory of its own."""
    saved = dict(os.environ)
    work = tmp_path_factory.mktemp("readme")
    with Simulator(answer=tutorial_answer) as sim:
        os.environ[CACHE_ENV] = str(work / "cache")
        os.environ["MPLBACKEND"] = "Agg"  # res.plot() draws off screen
        urls = {"openai": sim.base_url, "anthropic": sim.anthropic_base_url, "gemini": sim.gemini_base_url}
        for provider, (endpoint, keys) in PROVIDER_ENV.items():
            os.environ[endpoint] = urls[provider]
            os.environ.update(dict.fromkeys(keys, sim.api_key))
        cwd = os.getcwd()
        os.chdir(work)
        try:
            yield {"work": work, "namespaces": {}, "env": dict(os.environ)}
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(saved)


@pytest.mark.parametrize("block", [*RUN, *RUN], ids=[f"first-{b.id}" for b in RUN] + [f"warm-{b.id}" for b in RUN])
def test_readme_block_runs(readme_env, block, request):
    """Each block, in README order, then all of them again on the warm cache."""
    os.environ.clear()
    os.environ.update(readme_env["env"])  # a block that changes the environment (notebook_setup) changes only its own
    try:
        if block.language == "python":
            run_number = 2 if request.node.callspec.id.startswith("warm-") else 1
            namespace = readme_env["namespaces"].get((run_number, block.heading))
            if namespace is None:  # a module of its own, so pydantic resolves the annotations of classes made here
                module = types.ModuleType(f"readme_{run_number}_L{block.line}")
                sys.modules[module.__name__] = module
                namespace = readme_env["namespaces"][run_number, block.heading] = module.__dict__
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a price the simulator's model names do not have
                run_python(block, namespace)
        else:
            run_shell(block, readme_env["work"])
    finally:
        os.chdir(readme_env["work"])


def test_every_block_that_does_not_run_says_why():
    code = [b for b in ALL if b.language in RUN_LANGUAGES]
    skipped = [b for b in code if b.skip is not None]
    assert all(len(b.skip) > 10 for b in skipped), [b.id for b in skipped]
    assert len(skipped) <= len(code) // 4, f"most blocks must run: {[(b.id, b.skip) for b in skipped]}"


def test_the_first_screen_runs_with_no_key(tmp_path):
    """A new user's first paste: the blocks above the first section, in a fresh process, no key anywhere."""
    first = [b for b in RUN if b.first_screen and b.language == "python"]
    assert first, "the README must open with a runnable example"
    env = {k: v for k, v in os.environ.items() if not re.search(r"API_KEY|BASE_URL", k)}
    env.update({CACHE_ENV: str(tmp_path / "cache"), "PYTHONPATH": str(README.parent)})
    script = "\n".join(b.source for b in first)
    for attempt in ("first", "again"):  # the second run on the cache the first one filled
        done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{attempt}: {done.stderr}"
        assert "positive" in done.stdout and "negative" in done.stdout, done.stdout
