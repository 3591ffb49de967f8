"""Issue 19: what a new user meets in the first hour. Messages that name the fix, outputs in pandas' own
dtypes, a readable report and estimate, `llmframe --version` and a fast `llmframe info`, a red end for a run
where every row failed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pandas as pd
import pytest

import llmframe  # noqa: F401  (registers df.llm)
from llmframe.errors import ConfigError, TemplateError
from llmframe.testing import SimulatedError

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


def llmframe_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmframe", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture
def no_keys(monkeypatch):
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("model", ["anthropic:claude-haiku-4-5", "gemini:gemini-2.5-flash"])
def test_a_missing_key_of_a_vendor_api_names_its_variable_and_no_local_server(no_keys, model):
    with pytest.raises(ConfigError) as caught:
        pd.DataFrame({"q": ["a"]}).llm.generate("{q}", model=model)
    assert "pass api_key=..." in str(caught.value) and "_API_KEY" in str(caught.value)
    assert "local" not in str(caught.value)


def test_a_missing_openai_key_mentions_local_servers(no_keys):
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY, or pass api_key=\.\.\. \(a local OpenAI-compatible"):
        pd.DataFrame({"q": ["a"]}).llm.generate("{q}", model="openai:gpt-4o-mini")


def test_the_command_line_names_its_flag_not_the_keyword(tmp_path):
    pd.DataFrame({"q": ["a"]}).to_parquet(tmp_path / "in.parquet")
    env = {k: "" for k in KEYS}
    done = llmframe_cli("run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "-t", "{q}",
                        "-m", "anthropic:claude-haiku-4-5", env=env)
    assert done.returncode == 2
    assert "pass --api-key ..." in done.stderr and "api_key=" not in done.stderr, done.stderr


@pytest.mark.parametrize("template, doubled", [
    ('Reply as JSON like {"a": 1} about {q}', '{{"a": 1}}'),
    ('Reply as {"a": {"b": 2}} about {q}', '{{"a": {{"b": 2}}}}'),
])
def test_literal_braces_suggest_doubling_them(template, doubled):
    with pytest.raises(TemplateError) as caught:
        pd.DataFrame({"q": ["a"]}).llm.generate(template, model="openai:m", api_key="k")
    assert f"double its braces: {doubled}" in str(caught.value)


def test_an_unknown_plain_column_gets_no_brace_hint():
    with pytest.raises(TemplateError) as caught:
        pd.DataFrame({"q": ["a"]}).llm.generate("{nope}", model="openai:m", api_key="k")
    assert "braces" not in str(caught.value) and "columns are ['q']" in str(caught.value)


@pytest.mark.parametrize("call", [
    lambda df: df.llm.generate("{q}", "openai:m"),
    lambda df: df.llm.estimate("{q}", "openai:m"),
    lambda df: df["q"].llm.generate("{}", "openai:m"),
    lambda df: df.llm.sweep("{q}", ["openai:m"]),
])
def test_a_positional_model_names_the_keyword(call):
    with pytest.raises(TypeError, match=r"takes only the template positionally; .*model"):
        call(pd.DataFrame({"q": ["a"]}))


def test_a_positional_model_of_agenerate_too():
    import asyncio

    with pytest.raises(TypeError, match=r"agenerate\(template, model='openai:m'\)"):
        asyncio.run(pd.DataFrame({"q": ["a"]}).llm.agenerate("{q}", "openai:m"))


def test_sweep_dry_run_needs_no_key_as_estimate(no_keys, tmp_path):
    df = pd.DataFrame({"q": ["a", "b"]})
    table = df.llm.sweep("{q}", models=["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"], dry_run=True,
                         max_tokens=5, cache_dir=str(tmp_path))
    assert table["uncached_requests"].tolist() == [2, 2]


def test_outputs_follow_the_input_frames_string_dtype(gen, sim):
    """pandas' own dtype for text (str on pandas 3, with NaN): answers, errors and structured text fields."""
    from pydantic import BaseModel

    class Tag(BaseModel):
        label: str
        n: int

    df = pd.DataFrame({"q": ["a", "FAIL", None]})
    sim.answer = lambda body: (_ for _ in ()).throw(SimulatedError(400, "no")) if "FAIL" in str(body) else "ok"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = gen(df, "{q}")
    text = df["q"].dtype
    pd.testing.assert_series_equal(out.dtypes, pd.Series({"q": text, "response": text, "response_error": text}))
    assert pd.isna(out["response"].iloc[1]) and out["response_error"].iloc[0] is df["q"].iloc[2]  # one marker
    sim.answer = lambda body: '{"label": "x", "n": 1}'
    tags = gen(df.iloc[:1], "{q}", output=Tag)
    pd.testing.assert_series_equal(tags.dtypes, pd.Series({"q": text, "label": text, "n": pd.Int64Dtype(),
                                                           "tag_error": text}))
    series = gen(df["q"].iloc[:1], "{}")
    pd.testing.assert_series_equal(series, pd.Series(["x" * 0 + series.iloc[0]], name="response", dtype=text))
    if pd.__version__ >= "3":
        assert isinstance(text, pd.StringDtype) and text.na_value is not pd.NA  # "str", not "string"


def test_the_report_prints_as_lines(gen, sim):
    out = gen(pd.DataFrame({"q": ["a", "b"]}), "{q}", prices={"openai:sim-model": {"input_mtok": 0.1,
                                                                                  "output_mtok": 0.2}})
    text = str(out.attrs["llmframe"])
    lines = text.splitlines()
    assert lines[0].startswith("llmframe run: 2 rows, 2 sent") and len(lines) > 10
    cost = next(line for line in lines if line.strip().startswith("cost paid"))
    assert "$0.00000" in cost and not re.search(r"\de-\d", text)  # plain dollars, never 2.2e-06
    assert repr(out.attrs["llmframe"]).startswith("{'model'")  # the dict as it was, for JSON and logs


def test_estimate_says_why_rows_are_not_sent_and_prints_plain_dollars(tmp_path):
    from llmframe.cost.money import dollars

    df = pd.DataFrame({"q": ["same", "same", "other"]})
    est = df.llm.estimate("{q}", model="openai:gpt-4o-mini", max_tokens=5, cache_dir=str(tmp_path))
    text = repr(est)
    assert "(1 row sharing an identical row's request)" in text and "cached" not in text
    assert "e-0" not in text and "cost $0.0000" in text
    assert [dollars(v) for v in (3.45e-06, 0.5, 1234.567, 0)] == ["$0.00000345", "$0.50", "$1,234.57", "$0"]


def test_version_and_a_fast_info_that_names_pip_packages():
    assert llmframe_cli("--version").stdout.strip() == f"llmframe {llmframe.__version__}"
    code = ("import sys, runpy; sys.argv = ['llmframe', 'info']\n"
            "try: runpy.run_module('llmframe', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'vllm', 'anthropic', 'google.genai', 'openai', 'ray') "
            "if m in sys.modules]\n"
            "print('IMPORTED', heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "IMPORTED []" in done.stdout, done.stdout + done.stderr
    assert "provider gemini" in done.stdout and "extra    notebook" in done.stdout


def test_a_missing_package_is_named_as_pip_installs_it(monkeypatch):
    from llmframe import providers

    for name in ("google", "google.genai"):  # what an environment without google-genai looks like to import
        monkeypatch.setitem(sys.modules, name, None)
    assert providers.available()["gemini"] == \
        "the 'gemini' provider needs google-genai, not installed here: pip install 'llmframe[gemini]'"


def test_the_pip_names_are_those_of_the_extras():
    from llmframe.apps.cli.info import EXTRAS
    from llmframe.providers import NEEDS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, needs in {**NEEDS, **EXTRAS}.items():
        listed = {req.split(">")[0].split("=")[0].split("<")[0].strip() for req in extras[extra]}
        assert set(needs.values()) <= listed, (extra, needs, listed)


@pytest.mark.parametrize("answered, words, colour", [
    (dict(skipped=True), "(all 2 failed: HTTP 401: bad key)", "\x1b[31m"),  # skipped rows are no answer: red
    (dict(cached=True), "(complete, 2 failed)", "\x1b[33m"),  # one row answered (from the cache): amber
])
def test_a_run_where_every_row_failed_ends_red_with_its_first_error(capsys, answered, words, colour):
    from llmframe.engine.progress import Progress

    progress = Progress(3, show=True, description="openai:m")
    progress.advance(1, **answered)
    progress.advance(2, failed=True, error="HTTP 401: bad key")
    progress.close("done")
    last = capsys.readouterr().err.split("\r")[-1]
    assert f"openai:m {words}" in last and colour in last, last


def test_llmframe_run_draws_one_bar(sim, tmp_path):
    """The argument check on no rows draws no bar of its own before the run's (issue 19 item 7)."""
    pd.DataFrame({"q": ["a", "b"]}).to_parquet(tmp_path / "in.parquet")
    done = llmframe_cli("run", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "-t", "{q}",
                        "-m", "openai:sim-model", "--base-url", sim.base_url, "--api-key", sim.api_key,
                        "--progress", "--cache", "off")
    assert done.returncode == 0, done.stderr
    bars = [line for line in done.stderr.replace("\r", "\n").splitlines() if "openai:sim-model" in line]
    assert bars and all("/2" in line for line in bars), bars  # no bar of 0 rows


def test_the_cli_simulator_answers_sentiment_words_with_the_tutorial_rule():
    from llmframe.testing import SimulatorProcess  # noqa: F401  (the command below is what it runs)

    proc = subprocess.Popen([sys.executable, "-m", "llmframe.testing", "--answer", "tutorial", "--max-seconds", "60"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        url = proc.stdout.readline().split()[1]
        out = pd.DataFrame({"t": ["great phone", "broke in a week"]}).llm.generate(
            "Sentiment of: {t}", model="openai:sim-model", base_url=url, api_key="sim", cache=False)
        assert out["response"].tolist() == ["positive", "negative"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
