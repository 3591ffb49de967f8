"""Providers from outside llmframe: a plugin package made and installed here, and Provider instances as model=.

As simonw/llm tests its plugins: the test writes a small package with an entry point in the group
"llmframe.providers", pip installs it for real (no network: setuptools from this environment), and
runs llmframe in a subprocess whose path sees it, so the entry point is found as a user's would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import llmframe
from llmframe.errors import ConfigError
from llmframe.providers import Provider, create, parse_model
from llmframe.plan.request import Request, Response

PLUGIN = '''
"""A provider plugin that answers each prompt reversed: the base class contract, and nothing of llmframe else."""

from llmframe.providers import Provider
from llmframe.plan.request import Response


class ReverseProvider(Provider):
    name = "myprovider"

    async def complete(self, request):
        prompt = request.messages[-1]["content"]
        return Response(text=prompt[::-1], input_tokens=len(prompt.split()), output_tokens=1, finish_reason="stop")


class NotAProvider:
    name = "broken"
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "llmframe-reverse"
version = "0.1"

[project.entry-points."llmframe.providers"]
myprovider = "llmframe_reverse:ReverseProvider"
broken = "llmframe_reverse:NotAProvider"
misnamed = "llmframe_reverse:ReverseProvider"

[tool.setuptools]
py-modules = ["llmframe_reverse"]
'''

SCRIPT = '''
import json, sys
import pandas as pd
import llmframe
from llmframe.errors import ConfigError
from llmframe.providers import parse_model

df = pd.DataFrame({"q": ["abc", "hello world", "abc"]})
prices = {"myprovider:x": {"input_mtok": 1e6, "output_mtok": 2e6}}  # $1 a word in, $2 a token out


def run(model):
    out = df.llm.generate("{q}", model=model, usage=True, prices=prices, progress=False)
    return {"answers": out["response"].tolist(), "report": out.attrs["llmframe"],
            "cost": out["response_cost"].tolist(), "input_tokens": out["response_input_tokens"].tolist()}


def error(call):
    try:
        call()
    except ConfigError as exc:
        return str(exc)


if sys.argv[1] == "string":
    first, again = run("myprovider:x"), run("myprovider:x")
    print(json.dumps({"first": first, "again": again,
                      "unknown": error(lambda: parse_model("nobody:x")),
                      "broken": error(lambda: df.llm.generate("{q}", model="broken:x", progress=False)),
                      "batch": error(lambda: df.llm.generate("{q}", model="myprovider:x", mode="batch"))}))
else:  # another process, the class passed as an instance: the same keys, so every answer is cached
    from llmframe_reverse import ReverseProvider

    print(json.dumps({"instance": run(ReverseProvider("x"))}))
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """The plugin package, pip installed (without network) into a folder of its own: a path entry to add."""
    root = tmp_path_factory.mktemp("plugin")
    source, target = root / "src", root / "site"
    source.mkdir()
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / "llmframe_reverse.py").write_text(PLUGIN)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
                    "--no-deps", "--no-cache-dir", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True)
    assert list(target.glob("llmframe_reverse-0.1.dist-info/entry_points.txt"))
    return str(target)


def run_with(plugin_path: str, *args: str, cache_dir: Path) -> subprocess.CompletedProcess:
    """Python with the plugin on its path (and this llmframe before any other), in a fresh process."""
    here = str(Path(llmframe.__file__).resolve().parents[1])
    path = os.pathsep.join([plugin_path, here, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "LLMFRAME_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_an_installed_plugin_answers_caches_reports_and_is_listed(plugin_path, cache_dir):
    done = run_with(plugin_path, "-c", SCRIPT, "string", cache_dir=cache_dir)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    first, again = seen["first"], seen["again"]
    assert first["answers"] == ["cba", "dlrow olleh", "cba"]
    assert (first["report"]["model"], first["report"]["requests_sent"], first["report"]["cached"]) == \
        ("myprovider:x", 2, 0)
    assert first["input_tokens"] == [1, 2, 1] and first["cost"] == [3.0, 4.0, 3.0]
    assert (first["report"]["input_tokens"], first["report"]["output_tokens"], first["report"]["cost"]) == (3, 2, 7.0)
    assert again["answers"] == first["answers"] and again["cost"] == first["cost"]
    assert (again["report"]["requests_sent"], again["report"]["cached"], again["report"]["cost"]) == (0, 3, 0.0)
    assert "myprovider" in seen["unknown"] and "broken" in seen["unknown"]
    assert "llmframe_reverse:NotAProvider" in seen["broken"] and "not a subclass" in seen["broken"]
    assert seen["batch"] == "the myprovider provider has no batch API: use mode='online'"

    instance = run_with(plugin_path, "-c", SCRIPT, "instance", cache_dir=cache_dir)
    assert instance.returncode == 0, instance.stderr
    reused = json.loads(instance.stdout)["instance"]
    assert reused["answers"] == first["answers"] and reused["report"]["model"] == "myprovider:x"
    assert (reused["report"]["requests_sent"], reused["report"]["cached"]) == (0, 3)

    info = run_with(plugin_path, "-m", "llmframe", "info", cache_dir=cache_dir)
    assert info.returncode == 0, info.stderr
    listed = {line.split()[1]: line for line in info.stdout.splitlines() if line.startswith("provider ")}
    assert "installed (plugin llmframe_reverse:ReverseProvider from llmframe-reverse 0.1)" in listed["myprovider"]
    assert "not a subclass" in listed["broken"] and "installed" in listed["openai"]
    assert "has name = 'myprovider': a provider's name must be the prefix it is registered under" in listed["misnamed"]


def test_without_the_plugin_its_prefix_is_unknown():
    code = "from llmframe.providers import parse_model; parse_model('myprovider:x')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "unknown provider 'myprovider'" in done.stderr and "no provider plugins installed" in done.stderr


class Counting(Provider):
    """A provider made by the caller, passed as model=: counts what it is asked."""

    name = "counting"

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self.asked: list[str] = []
        self.closed = 0

    async def complete(self, request: Request) -> Response:
        self.asked.append(request.messages[-1]["content"])
        return Response(text=request.messages[-1]["content"].upper(), input_tokens=1, output_tokens=1)

    async def aclose(self) -> None:
        self.closed += 1


def test_a_provider_instance_as_model_is_used_as_it_is_and_keyed_by_name_model_and_endpoint():
    df = pd.DataFrame({"q": ["a", "b", "a"]})
    provider = Counting("m1")
    out = df.llm.generate("{q}", model=provider, progress=False)
    assert out["response"].tolist() == ["A", "B", "A"] and sorted(provider.asked) == ["a", "b"]
    assert out.attrs["llmframe"]["model"] == "counting:m1" and provider.closed == 1
    other = Counting("m1")  # another instance of the same class and model: the same keys
    again = df.llm.generate("{q}", model=other, progress=False)
    assert again["response"].tolist() == ["A", "B", "A"] and other.asked == []
    assert again.attrs["llmframe"]["cached"] == 3
    elsewhere = Counting("m2")  # another model: other keys
    df.llm.generate("{q}", model=elsewhere, progress=False)
    assert sorted(elsewhere.asked) == ["a", "b"]
    provider.asked.clear()
    df.llm.generate("{q}", model=provider, progress=False, cache=False)  # the same instance serves run after run
    assert sorted(provider.asked) == ["a", "b"] and provider.closed == 2


def test_a_provider_instance_takes_no_second_configuration():
    provider = Counting("m")
    assert parse_model(provider) == ("counting", "m") and create(provider) is provider
    with pytest.raises(ConfigError, match="carries its own configuration: pass api_key, provider_options"):
        create(provider, api_key="k", options={"x": 1})
    with pytest.raises(ConfigError, match="carries its own configuration: pass base_url"):
        pd.DataFrame({"q": ["a"]}).llm.generate("{q}", model=provider, base_url="http://127.0.0.1:9")


@pytest.mark.parametrize(("prefix", "url", "options"), [("anthropic", "anthropic_base_url", None),
                                                       ("gemini", "gemini_base_url", None),
                                                       ("openai", "base_url", {"transport": "sdk"})])
def test_a_built_in_provider_instance_reopens_its_client_after_a_run(sim, prefix, url, options):
    from llmframe.providers import provider_class

    provider = provider_class(prefix)("sim-model", api_key=sim.api_key, base_url=getattr(sim, url), options=options)
    df = pd.DataFrame({"q": ["x", "y"]})
    first = df.llm.generate("{q}", model=provider, progress=False, cache=False)
    second = df.llm.generate("{q}", model=provider, progress=False, cache=False)  # its first client was closed
    assert first["response_error"].isna().all() and second["response_error"].isna().all()
    assert second["response"].tolist() == first["response"].tolist()
