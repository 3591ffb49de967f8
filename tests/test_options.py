"""The one table of generate's options, and what is made from it or checked against it."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc
import re
from pathlib import Path

import pandas as pd
import pytest

from llmframe import constants, options
from llmframe.apps import cli
from llmframe.faces.frames import rows_of
from llmframe.errors import ConfigError, TemplateError
from llmframe.faces.pandas import DataFrameAccessor, SeriesAccessor
from llmframe.options import OPTIONS
from llmframe.faces.planning import plan
from llmframe.plan import build
from llmframe.providers import resolve

README = Path(__file__).resolve().parent.parent / "README.md"

# (accessor, method, the table's options it leaves out, the defaults it changes)
FACES = [
    (DataFrameAccessor, "generate", (), {}),
    (DataFrameAccessor, "agenerate", (), {}),
    (DataFrameAccessor, "estimate", ("errors", "dtype_backend"), {}),
    (DataFrameAccessor, "submit", (), {"mode": "batch"}),
    (SeriesAccessor, "generate", (), {}),
    (SeriesAccessor, "agenerate", (), {}),
    (SeriesAccessor, "estimate", ("errors", "dtype_backend"), {}),
]
FACE_IDS = [f"{accessor.__name__}.{method}" for accessor, method, _, _ in FACES]


def keyword_only(func) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(func).parameters.values() if p.kind is p.KEYWORD_ONLY]


@pytest.mark.parametrize("accessor, method, left_out, changed", FACES, ids=FACE_IDS)
def test_each_face_takes_the_tables_options_as_keywords_in_its_order(accessor, method, left_out, changed):
    expected = [o for o in OPTIONS if o.name not in left_out]
    params = keyword_only(getattr(accessor, method))
    assert [p.name for p in params] == [o.name for o in expected]
    assert [p.annotation for p in params] == [o.type for o in expected]
    assert [p.default for p in params] == [changed.get(o.name, o.default) for o in expected]
    # Anything else is caught, to be refused with the list of valid options (not a bare TypeError).
    assert [p.kind for p in inspect.signature(getattr(accessor, method)).parameters.values()][-1] is \
        inspect.Parameter.VAR_KEYWORD


def test_plan_takes_every_option_with_the_tables_defaults(monkeypatch):
    # plan() has no keyword list of its own to drift from the table: model= comes resolved (target=), every
    # other option is the table's, its default the table's where the caller leaves it out.
    internal = {"target", "positional_column", "output_frame_columns"}  # set by the faces, never by a caller
    assert {p.name for p in keyword_only(build.plan)} == internal
    seen: dict = {}
    real = options.checked
    monkeypatch.setattr(options, "checked", lambda values: seen.update(values) or real(values))
    run = build.plan(rows_of(pd.DataFrame({"x": ["a"]})), "{x}", target=resolve("openai:m"), api_key="k")
    # dtype_backend= is the face's own (options.FACE_ONLY): how its frame is built, never planned or keyed.
    assert seen == {**{o.name: o.default for o in OPTIONS if o.name not in {"model", "dtype_backend"}}, "api_key": "k"}
    assert run.policy.max_attempts == constants.MAX_ATTEMPTS and run.output.text == constants.DEFAULT_OUTPUT
    with pytest.raises(ConfigError, match=re.escape("unknown option(s) ['model', 'temprature']; valid options are [")):
        build.plan(rows_of(pd.DataFrame({"x": ["a"]})), "{x}", target=resolve("openai:m"), model="openai:m",
                   temprature=0)


@pytest.mark.parametrize("accessor, method, left_out, changed", FACES, ids=FACE_IDS)
def test_help_lists_every_option_with_its_default(accessor, method, left_out, changed):
    obj = pd.DataFrame({"x": ["a"]}) if accessor is DataFrameAccessor else pd.Series(["a"])
    text = pydoc.render_doc(getattr(obj.llm, method), renderer=pydoc.plaintext)
    for o in OPTIONS:
        if o.name in left_out:
            continue
        default = options.default_text(o, changed.get(o.name, o.default))
        assert re.search(rf"^\s+{o.name} \({re.escape(default)}\): ", text, re.M), (o.name, default)
    assert "(default in parentheses)" in text


def test_help_shows_the_defaults_as_the_table_words_them():
    doc = inspect.getdoc(DataFrameAccessor.generate)
    assert f"max_attempts ({constants.MAX_ATTEMPTS}): attempts per request" in doc
    assert "timeout (600): " in doc and "temperature (the provider's): " in doc and "model (required): " in doc
    assert f"max_concurrency ({constants.MAX_CONCURRENCY}): " in doc
    assert 'mode ("batch"): "batch": the provider\'s batch API; "online": a background run' in inspect.getdoc(
        DataFrameAccessor.submit)


def test_sweep_documents_the_options_it_passes_on_and_refuses_others():
    doc = inspect.getdoc(DataFrameAccessor.sweep)
    listed = re.findall(r"^  (\w+) \(", doc, re.M)
    assert listed == [o.name for o in OPTIONS if o.name in options.PASSED_ON - {"params", "max_cost", "usage"}]
    with pytest.raises(ConfigError, match=re.escape("unknown option(s) ['temprature']")):
        pd.DataFrame({"q": ["a"]}).llm.sweep("{q}", models="openai:m", temprature=0)


def test_tab_completion_offers_every_option():
    jedi = pytest.importorskip("jedi")
    df = pd.DataFrame({"x": ["a"]})
    calls = [('df.llm.generate("{x}", max_att', "max_attempts"), ('df["x"].llm.estimate("{}", tempe', "temperature"),
             ("df.llm.submit(provider_o", "provider_options")]
    for code, expected in calls:
        names = [c.name for c in jedi.Interpreter(code, [{"df": df}]).complete()]
        assert f"{expected}=" in names, (code, names)
    signature = jedi.Interpreter("df.llm.agenerate(", [{"df": df}]).get_signatures()[0]
    assert [p.name for p in signature.params][1:-1] == [o.name for o in OPTIONS]


def test_readme_options_table_is_the_tables():
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- options table:[^\n]*-->\n(.*?)\n<!-- end of the options table -->", text, re.S)
    assert found, "the README's options table lost its markers"
    assert found.group(1) == options.markdown(), (
        "the README's options table differs from llmframe/options.py: replace it with the output of\n"
        "python -c 'from llmframe import options; print(options.markdown())'"
    )


def test_every_see_also_is_a_readme_section():
    headings = set(re.findall(r"^#+ (.+)$", README.read_text(encoding="utf-8"), re.M))
    assert {o.see for o in OPTIONS if o.see} <= headings


def test_the_readme_names_every_flag_of_llmframe_run():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Files in, files out"):]
    section = section[:section.index("\n## ")]
    missing = [o.flag.flag for o in cli.GENERATE_FLAGS if not re.search(rf"`{o.flag.flag}[ `]", section)]
    assert not missing, f"the README's `llmframe run` section does not name {missing}"


# A value each check refuses; every option with a check has one here.
BAD = {
    "errors": "ignore", "prefix": 3, "output_mode": "rows", "strict": "no", "structured": "xml",
    "invalid_retries": -1, "usage": 1, "temperature": 3, "top_p": "high", "max_tokens": 0, "seed": 1.5,
    "stop": [""], "params": {"temperature": 1}, "missing": "drop", "max_prompt_tokens": 0, "cache": 1,
    "max_concurrency": 0, "rpm": -1, "tpm": 0, "max_attempts": 0, "max_failures_in_a_row": True, "timeout": 0,
    "max_wait": float("nan"), "mode": "later", "poll_interval": 0, "retry_online": "yes",
    "prompt_cache": "yes", "rows_per_request": 0, "cascade": "openai:gpt-4o", "calibrate": -1, "context": "",
    "prices": {"gpt": {}}, "max_cost": -1, "dtype_backend": "arrow",
    "max_image_side": 0, "fetch_urls": "yes",
    "tools": "lookup", "max_turns": 0, "tool_timeout": 0, "transcript": "yes", "tools_version": 3,
    "reasoning_effort": "extreme", "api": "assistants", "on_row": "print", "on_progress": 1, "on_done": [],
}


def test_every_check_has_a_bad_value_here():
    assert set(BAD) == {o.name for o in OPTIONS if o.check is not None}


@pytest.mark.parametrize("name", sorted(BAD))
def test_plan_refuses_a_bad_value_with_the_tables_message_before_sending(gen, sim, name):
    option = options.BY_NAME[name]
    error = TemplateError if name == "missing" else ConfigError
    with pytest.raises(error) as direct:
        option.check(name, BAD[name])
    with pytest.raises(error) as through_generate:
        gen(pd.DataFrame({"x": ["a"]}), "{x}", **{name: BAD[name]})
    assert str(through_generate.value) == str(direct.value)
    assert str(direct.value).startswith(name)
    assert sim.count == 0


def test_plan_validates_through_the_table(monkeypatch, tmp_path):
    def refuse(name, value):
        raise ConfigError(f"{name}={value!r}: refused by the table")

    table = tuple(dataclasses.replace(o, check=refuse) if o.name == "max_wait" else o for o in OPTIONS)
    monkeypatch.setattr(options, "OPTIONS", table)
    with pytest.raises(ConfigError, match="max_wait=120.0: refused by the table"):
        plan(rows_of(pd.DataFrame({"x": ["a"]})), "{x}", model="openai:m", api_key="k", cache=False)


def test_checks_keep_what_the_plan_used_before():
    assert options.checked({"temperature": 0, "max_attempts": 3, "cache": "refresh", "stop": "x", "rpm": None}) == \
        {"temperature": 0.0, "cache": "refresh", "stop": ["x"], "rpm": None, "max_attempts": 3}
    for good in (True, False, "refresh"):
        assert options.checked({"cache": good}) == {"cache": good}


@pytest.mark.parametrize("call", ["generate", "estimate", "submit", "series"])
def test_an_unknown_keyword_names_the_valid_options(call):
    df = pd.DataFrame({"x": ["a"]})
    method = df["x"].llm.generate if call == "series" else getattr(df.llm, call)
    with pytest.raises(ConfigError, match=re.escape("unknown option(s) ['temprature']; valid options are [")):
        method("{x}", model="openai:m", api_key="k", temprature=0)


def test_submit_checks_its_mode_like_generate():
    with pytest.raises(ConfigError, match=r"mode must be one of \('online', 'batch', 'auto'\), got 'later'"):
        pd.DataFrame({"x": ["a"]}).llm.submit("{x}", model="openai:m", api_key="k", mode="later")


def run_help(monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return subparsers.choices["run"].format_help()


def test_every_flag_shows_its_default_from_the_table(monkeypatch):
    text = run_help(monkeypatch)
    for option in cli.GENERATE_FLAGS:
        assert options.flag_help(option).replace("%%", "%") in text, option.name
    assert f"requests in flight (default: {constants.MAX_CONCURRENCY})" in text
    assert "no cache (default: on)" in text and "(default: skip)" in text and "(default: the provider's)" in text
    assert f"(default: {constants.STREAM_BATCH_ROWS:,})" in text
    assert not re.search(r"default \d", text)  # the old hand-written "(default 64)"


def test_readme_embed_options_table_is_the_tables():
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- embed options table:[^\n]*-->\n(.*?)\n<!-- end of the embed options table -->", text, re.S)
    assert found, "the README's embed options table lost its markers"
    assert found.group(1) == options.markdown(options.EMBED_OWN)
    headings = set(re.findall(r"^#+ (.+)$", text, re.M))
    assert {o.see for o in options.EMBED_OWN if o.see} <= headings


@pytest.mark.parametrize("accessor, method, left_out, changed", FACES, ids=FACE_IDS)
def test_model_is_a_string_or_a_provider_instance_in_every_signature(accessor, method, left_out, changed):
    from llmframe.providers.base import Provider

    assert options.BY_NAME["model"].type == "str | Provider"
    obj = pd.DataFrame({"x": ["a"]}) if accessor is DataFrameAccessor else pd.Series(["a"])
    bound = getattr(obj.llm, method)
    assert inspect.signature(bound, eval_str=True).parameters["model"].annotation == str | Provider
    assert "model: 'str | Provider'" in pydoc.render_doc(bound, renderer=pydoc.plaintext)
