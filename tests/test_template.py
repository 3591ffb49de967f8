"""Templates are pure functions of the frame: no server needed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from llmframe.errors import TemplateError
from llmframe.faces.frames import rows_of
from llmframe.plan.request import canonical_json
from llmframe.plan.template import Template


def render(template, df, **kwargs):
    compiled = Template(template, list(df.columns), system=kwargs.pop("system", None),
                        positional_column=kwargs.pop("positional_column", None))
    prompts = compiled.render(rows_of(df), **kwargs)
    return [None if i in prompts.skipped else prompts.messages(i) for i in range(len(prompts))], prompts


def user(text):
    return [{"role": "user", "content": text}]


def test_format_semantics_escapes_specs_and_conversions():
    df = pd.DataFrame({"name": ["Ann"], "price": [3.14159], "n": [7]})
    rows, _ = render("{{literal}} {name!r} costs {price:.2f} x{n:03d}", df)
    assert rows == [user("{literal} 'Ann' costs 3.14 x007")]


def test_columns_with_spaces_dots_and_attribute_access():
    df = pd.DataFrame({"first name": ["Ann"], "a.b": ["dotted"], "when": [pd.Timestamp("2024-05-06")]})
    rows, _ = render("{first name} / {a.b} / {when.year}", df)
    assert rows == [user("Ann / dotted / 2024")]


def test_non_string_values():
    df = pd.DataFrame(
        {
            "i": pd.array([1, 2], dtype="Int64"),
            "f": [1.5, 2.0],
            "b": [True, False],
            "lst": [["a", "é"], [1, 2]],
            "d": [{"k": "v"}, {}],
            "arr": [np.array([1, 2]), np.array([3])],
        }
    )
    rows, _ = render("{i}|{f}|{b}|{lst}|{d}|{arr}|{lst[0]}", df)
    assert rows[0] == user('1|1.5|True|["a", "é"]|{"k": "v"}|[1, 2]|a')
    assert rows[1] == user("2|2.0|False|[1, 2]|{}|[3]|1")


def test_sets_and_nan_inside_containers_render_as_valid_json():
    df = pd.DataFrame({"s": [{"b", "a", "c"}, frozenset({3, 1})],
                       "lst": [[1.5, float("nan")], {"k": [float("inf"), pd.NA, np.int64(2)], "t": {"y", "x"}}]})
    rows, _ = render("{s}|{lst}", df)
    texts = [row[0]["content"] for row in rows]
    assert texts == ['["a", "b", "c"]|[1.5, null]', '[1, 3]|{"k": [null, null, 2], "t": ["x", "y"]}']
    for text in texts:
        for part in text.split("|"):
            json.loads(part, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))


def test_unicode_and_nul_bytes_pass_through():
    df = pd.DataFrame({"t": ["héllo 👋 مرحبا", "nul\x00byte"]})
    rows, _ = render("{t}", df)
    assert rows == [user("héllo 👋 مرحبا"), user("nul\x00byte")]


def test_system_prompt_is_a_template_too():
    df = pd.DataFrame({"lang": ["French"], "text": ["hi"]})
    rows, prompts = render("{text}", df, system="Answer in {lang}.")
    assert rows == [[{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hi"}]]
    assert prompts.roles == ("system", "user")


def test_system_with_a_system_message_is_ambiguous():
    with pytest.raises(TemplateError, match="keep one"):
        Template([{"role": "system", "content": "a"}, {"role": "user", "content": "{x}"}], ["x"], system="b")


def test_missing_values_in_any_used_column():
    df = pd.DataFrame({"a": ["x", None, "z", "w"], "b": [1.0, 2.0, np.nan, 4.0]})
    rows, prompts = render("{a} {b}", df)
    assert rows[0] == user("x 1.0") and rows[1] is None and rows[2] is None
    assert prompts.skipped == {1: "missing value in column 'a'", 2: "missing value in column 'b'"}
    with pytest.raises(TemplateError, match="2 row"):
        render("{a} {b}", df, missing="raise")


def test_unused_columns_may_have_missing_values():
    df = pd.DataFrame({"a": ["x"], "unused": [None]})
    rows, prompts = render("{a}", df)
    assert rows == [user("x")] and not prompts.skipped


def test_positional_placeholders_for_a_series():
    df = pd.DataFrame({"value": ["v"]})
    assert render("<{}>", df, positional_column="value")[0] == [user("<v>")]
    assert render("<{0}>", df, positional_column="value")[0] == [user("<v>")]
    with pytest.raises(TemplateError, match="one value per row"):
        render("<{1}>", df, positional_column="value")


def test_integer_column_names_are_placeholders_on_a_dataframe():
    df = pd.DataFrame([["a", 1.5], ["b", 2.25]])  # columns 0 and 1, as read_csv(header=None) gives
    assert render("{0} costs {1:.1f}", df)[0] == [user("a costs 1.5"), user("b costs 2.2")]
    assert render("{0!r}/{1.real}", df.set_axis([0, np.int64(1)], axis=1))[0][0] == user("'a'/1.5")
    with pytest.raises(TemplateError, match=r"column '2', which the frame does not have; columns are \['0', '1'\]"):
        render("{2}", df)
    with pytest.raises(TemplateError, match=r"positional placeholder \{0\}.*e.g. \{x\}"):
        render("{0}", pd.DataFrame({"x": ["a"]}))
    with pytest.raises(TemplateError, match=r"\{0\} could be the column 0 or the column '0': rename one"):
        render("{0}", pd.DataFrame([["a", "b"]], columns=[0, "0"]))
    assert render("{1}", pd.DataFrame([["a", "b"]], columns=[0, "1"]))[0] == [user("b")]
    with pytest.raises(TemplateError, match=r"such as 1.5, cannot be a placeholder: rename it"):
        render("{x} {1.5}", pd.DataFrame([["a", "b"]], columns=["x", 1.5]))


def test_no_placeholder_needs_an_explicit_flag():
    df = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(TemplateError, match="same prompt"):
        render("constant", df)
    rows, _ = render("constant {{x}}", df, allow_no_placeholder=True)
    assert rows == [user("constant {x}")] * 2


def test_a_row_that_does_not_fit_names_its_index():
    df = pd.DataFrame({"lst": [[1], []]}, index=["ok", "empty"])
    with pytest.raises(TemplateError, match="'empty'.*IndexError"):
        render("{lst[0]}", df)


def test_duplicate_column_names_are_refused():
    df = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(TemplateError, match="duplicate column"):
        render("{a}", df)


def test_function_templates_get_a_row_dict():
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=["r", "s"])
    rows, _ = render(lambda row: [{"role": "user", "content": f"{row['a']}{row['b']}"}], df, system="S")
    assert rows[1] == [{"role": "system", "content": "S"}, {"role": "user", "content": "2y"}]
    with pytest.raises(TemplateError, match="returned int for the row at index 's'"):
        render(lambda row: "ok" if row["a"] == 1 else 5, df)
    with pytest.raises(TemplateError, match="bad message"):
        render(lambda row: [{"role": "user", "content": 1}], df)


def test_fast_key_text_equals_the_canonical_json_of_the_messages():
    tricky = ['plain', 'quote " and \\ backslash', "new\nline\ttab", "nul\x00", "é 👋 مرحبا", "\ud800 lone", "</script>"]
    df = pd.DataFrame({"t": tricky}, dtype=object)  # object: pyarrow strings refuse lone surrogates
    _, prompts = render("{t}", df, system="sys {t}")
    assert list(prompts.messages_json()) == [canonical_json(prompts.messages(i)) for i in range(len(df))]
