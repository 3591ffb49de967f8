"""Cold start (issue 28): what `import llmframe`, the CLI and a first call import, checked in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "vllm", "openai", "anthropic", "google.genai", "ray", "httpx", "httpx2", "polars",
         "psycopg", "PIL")


def python(code: str, **env: str) -> str:
    """stdout of code run in a fresh interpreter on this checkout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def loaded(names) -> str:
    return f"print(json.dumps(sorted(m for m in {tuple(names)!r} if m in sys.modules)))"


@pytest.mark.parametrize("argv", [["--version"], ["info"]])
def test_the_cli_imports_no_sdk_torch_or_frame_library(argv):
    code = (f"import json, runpy, sys; sys.argv = ['llmframe', *{argv!r}]\n"
            "try: runpy.run_module('llmframe', run_name='__main__')\n"
            "except SystemExit: pass\n" + loaded((*HEAVY, "pandas", "aiohttp")))
    assert json.loads(python(code)) == []


def test_import_with_pandas_imports_no_engine_until_first_use():
    """With the preload off, the placeholders stand in: nothing of the engine is imported until df.llm."""
    code = ("import json, sys, warnings; warnings.simplefilter('error')\n"
            "import pandas as pd, llmframe\n"
            "before = [m for m in ('llmframe.faces.pandas', 'llmframe.plan.build', 'llmframe.engine.run', 'aiohttp') "
            "if m in sys.modules]\n"
            "sig = str(__import__('inspect').signature(pd.DataFrame.llm.generate))\n"  # a class lookup imports the face
            "from llmframe.faces.pandas import DataFrameAccessor, SeriesAccessor\n"
            "same = pd.DataFrame.llm is DataFrameAccessor and pd.Series.llm is SeriesAccessor\n"
            "kind = type(pd.DataFrame({'x': [1]}).llm).__name__\n"
            "print(json.dumps([before, 'model' in sig, same, kind]))")
    assert json.loads(python(code, LLMFRAME_PRELOAD="0")) == [[], True, True, "DataFrameAccessor"]


def test_the_preload_imports_the_transport_and_the_face_in_the_background():
    code = ("import json, sys, pandas as pd, llmframe\n"
            "from llmframe.faces import accessors\n"
            "[t.join(120) for t in accessors._preloading]\n"
            "from llmframe.faces.pandas import DataFrameAccessor\n"
            "print(json.dumps(['aiohttp' in sys.modules, pd.DataFrame.llm is DataFrameAccessor, "
            "'openai' in sys.modules]))")
    assert json.loads(python(code)) == [True, True, False]


def test_a_first_call_on_the_lean_path_never_imports_the_sdk(tmp_path):
    """The whole call (plan, provider, requests, answers) against the simulator in a fresh process."""
    code = ("import json, sys, pandas as pd, llmframe\n"
            "from llmframe.testing import SimulatorProcess\n"
            "from llmframe.testing.simulator import digest_answer\n"
            "with SimulatorProcess() as sim:\n"
            "    out = pd.DataFrame({'q': ['a', 'b']}).llm.generate('{q}', model='openai:m', base_url=sim.base_url,\n"
            f"        api_key=sim.api_key, cache_dir={str(tmp_path)!r}, progress=False,\n"
            "        provider_options={'organization': 'org-1'})\n"
            "ok = out['response'].tolist() == [digest_answer('a'), digest_answer('b')]\n"
            "print(json.dumps([ok, 'openai' in sys.modules]))")
    assert json.loads(python(code)) == [True, False]


# What a plain generate call must not import (README "Cold start"): the verbs and features it does not run.
NOT_FOR_GENERATE = ("llmframe.ops", "llmframe.ops.calls", "llmframe.ops.semantic", "llmframe.ops.aggregate",
                    "llmframe.ops.ranking", "llmframe.ops.vectors", "llmframe.plan.embed", "llmframe.apps",
                    "pydantic", "tqdm", "ipywidgets", *HEAVY)


def test_a_plain_generate_imports_neither_the_operators_nor_the_vector_verbs(tmp_path):
    """A fresh process (no preload) runs one generate on the simulator: none of NOT_FOR_GENERATE is imported; a
    dry-run filter afterwards imports the operators (the check can fail)."""
    from llmframe.testing import SimulatorProcess

    code = ("import json, sys, pandas as pd, llmframe\n"
            "df = pd.DataFrame({'q': ['a', 'b']})\n"
            "out = df.llm.generate('{q}', model='openai:m', base_url=sys.argv[1], api_key=sys.argv[2],\n"
            f"                      cache_dir={str(tmp_path)!r}, progress=False)\n"
            "assert out['response'].notna().all(), out\n"
            f"after = sorted(m for m in {NOT_FOR_GENERATE!r} if m in sys.modules)\n"
            "df.llm.filter('Is {q} a vowel?', model='openai:m', dry_run=True)\n"
            "print(json.dumps([after, 'llmframe.ops.semantic' in sys.modules]))")
    with SimulatorProcess() as sim:
        done = subprocess.run([sys.executable, "-c", code, sim.base_url, sim.api_key], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "LLMFRAME_PRELOAD": "0"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[], True]


def test_the_lean_configuration_is_the_sdks(monkeypatch):
    import openai

    from llmframe.providers.openai import _lean_config

    monkeypatch.setenv("OPENAI_ORG_ID", "org-env")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    for base_url, options in [(None, {}), ("http://127.0.0.1:8/x/v1/", {"organization": "org-arg"}),
                              (None, {"project": "p", "default_headers": {"X-Team": "a", "Accept": "text/json"}})]:
        sdk = openai.AsyncOpenAI(api_key="k", base_url=base_url, **options)
        headers, base = _lean_config(base_url, options)
        expected = {k: v for k, v in sdk.default_headers.items() if isinstance(v, str) and not k.startswith("X-Stainless")}
        assert headers == expected and base == str(sdk.base_url)
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert _lean_config(None, {})[1] == str(openai.AsyncOpenAI(api_key="k").base_url)
