"""The package surface: import cost, configure(), progress display, the command line."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import llmframe
from llmframe.errors import ConfigError


def test_import_loads_no_provider_sdk_or_server():
    code = (
        "import sys, llmframe; "
        "print(sorted(m for m in ('openai', 'httpx', 'httpx2', 'aiohttp', 'diskcache', 'tqdm', 'torch', "
        "'google.genai', 'anthropic', 'transformers', 'vllm', 'ray', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_ray_adapter_imports_ray_only_when_called():
    code = "import sys, llmframe.ray; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_surface_is_small():
    assert set(llmframe.__all__) == {"configure", "settings", "errors", "cache_stats", "clear_cache", "copy_cache",
                                     "batches", "cancel_batches", "jobs", "unload", "vectors", "last_report",
                                     "image", "document", "__version__"}
    assert hasattr(pd.DataFrame, "llm") and hasattr(pd.Series, "llm")


@pytest.fixture
def restore_settings(monkeypatch):
    monkeypatch.setattr(llmframe.config, "_current", llmframe.settings())


def test_configure_sets_process_defaults(gen, sim, tmp_path, restore_settings):
    llmframe.configure(cache_dir=tmp_path / "elsewhere", max_concurrency=3)
    assert llmframe.settings().max_concurrency == 3
    df = pd.DataFrame({"x": ["a", "b"]})
    gen(df, "{x}")
    assert (tmp_path / "elsewhere" / "cache.db").exists()
    with pytest.raises(ConfigError):
        llmframe.configure(max_concurrency=0)


def test_progress_bar_counts_rows_and_cache_hits(gen, sim, capsys):
    df = pd.DataFrame({"x": [f"v{i % 5}" for i in range(10)]})
    gen(df, "{x}", progress=True)
    gen(df, "{x}", progress=True)
    err = capsys.readouterr().err
    assert "10/10" in err and "cached=10" in err and "failed=0" in err


def test_progress_stays_quiet_where_nobody_watches(gen, sim, capsys):
    gen(pd.DataFrame({"x": ["a"]}), "{x}", progress=None)
    assert capsys.readouterr().err == ""


def test_demo_runs_offline_and_second_run_is_cached():
    out = subprocess.run([sys.executable, "-m", "llmframe", "demo"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "first run: 6 rows, 5 requests sent" in out.stdout
    assert "second run: 6 rows, 0 requests sent, 6 from cache" in out.stdout


def test_info_lists_providers():
    out = subprocess.run([sys.executable, "-m", "llmframe", "info"], capture_output=True, text=True, check=True)
    assert "provider openai" in out.stdout and "installed" in out.stdout
