"""Structured outputs: pydantic models and JSON Schemas in, typed columns out, through the simulator."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
from typing import Literal, Optional

import pandas as pd
import pytest
from pydantic import BaseModel, Field, field_validator

from llmframe.errors import ConfigError, RunAborted, SchemaError
from llmframe.testing import Faults


class Review(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    score: int = Field(ge=1, le=5)
    aspects: list[str]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: float
    y: float


class Everything(BaseModel):
    count: int
    ratio: float
    flag: bool
    label: str
    maybe: Optional[int]
    colour: Colour
    when: dt.datetime
    day: dt.date
    point: Point
    points: list[Point]


def reviews(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"review number {i}" for i in range(n)]}, index=[f"r{i}" for i in range(n)])


def test_a_pydantic_model_becomes_typed_columns(gen, sim):
    out = gen(reviews(), "Analyse this review: {text}", output=Review)
    assert list(out.columns) == ["text", "sentiment", "score", "aspects", "review_error"]
    assert isinstance(out["sentiment"].dtype, pd.CategoricalDtype)
    assert list(out["sentiment"].cat.categories) == ["positive", "negative", "neutral"]
    assert out["score"].dtype == "Int64" and out["score"].between(1, 5).all()
    assert out["aspects"].map(lambda v: isinstance(v, list)).all()
    assert out["review_error"].isna().all()
    for _, row in out.iterrows():
        Review(sentiment=row["sentiment"], score=row["score"], aspects=row["aspects"])
    response_format = sim.requests[0].body["response_format"]
    assert response_format["type"] == "json_schema" and response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["additionalProperties"] is False


def test_each_field_type_gets_its_dtype(gen, sim):
    out = gen(reviews(3), "{text}", output=Everything)
    dtypes = {c: str(out[c].dtype) for c in Everything.model_fields}
    assert dtypes["count"] == "Int64" and dtypes["ratio"] == "Float64" and dtypes["flag"] == "boolean"
    assert dtypes["label"] == str(pd.Series(["x"]).dtype) and dtypes["maybe"] == "Int64" and dtypes["colour"] == "category"
    assert dtypes["when"].startswith("datetime64")
    assert list(out["colour"].cat.categories) == ["red", "blue"]
    assert isinstance(out["day"].iloc[0], dt.date)
    assert set(out["point"].iloc[0]) == {"x", "y"}, "nested models become dicts (Arrow structs)"
    assert all(set(p) == {"x", "y"} for p in out["points"].iloc[0])


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Graded(BaseModel):
    stars: Literal[1, 2, 3]
    priority: Priority
    mixed: Literal[1, "a"]  # no one Arrow type for these: objects


def test_literals_and_enums_of_integers_are_categories_too(gen, sim, tmp_path):
    out = gen(reviews(6), "{text}", output=Graded)
    assert isinstance(out["stars"].dtype, pd.CategoricalDtype) and list(out["stars"].cat.categories) == [1, 2, 3]
    assert list(out["priority"].cat.categories) == [1, 2] and out["mixed"].dtype == object
    assert out["stars"].isin([1, 2, 3]).all() and out["graded_error"].isna().all()
    out[["stars", "priority"]].to_parquet(tmp_path / "graded.parquet")
    back = pd.read_parquet(tmp_path / "graded.parquet")
    assert back["stars"].tolist() == out["stars"].tolist() and back["priority"].tolist() == out["priority"].tolist()


def test_parquet_round_trip_keeps_types(gen, sim, tmp_path):
    out = gen(reviews(), "Analyse this review: {text}", output=Review)
    path = tmp_path / "out.parquet"
    out.to_parquet(path)
    back = pd.read_parquet(path)
    assert back["score"].dtype == "Int64" and isinstance(back["sentiment"].dtype, pd.CategoricalDtype)
    assert back["sentiment"].astype(str).tolist() == out["sentiment"].astype(str).tolist()
    assert [list(v) for v in back["aspects"]] == out["aspects"].tolist()
    nested = gen(reviews(2), "{text}", output=Everything)
    nested.to_parquet(path)
    again = pd.read_parquet(path)
    assert again["point"].tolist() == nested["point"].tolist()
    assert [list(v) for v in again["points"]] == nested["points"].tolist()


def test_invalid_answers_are_asked_again_with_the_problem(gen, sim):
    calls = {"n": 0}

    def answer(body):
        calls["n"] += 1
        if calls["n"] == 1:
            return '{"sentiment": "ecstatic", "score": 9, "aspects": []}'
        return json.dumps({"sentiment": "positive", "score": 5, "aspects": ["price"]})

    sim.answer = answer
    out = gen(reviews(1), "{text}", output=Review)
    assert out["sentiment"].iloc[0] == "positive" and out["review_error"].isna().all()
    assert out.attrs["llmframe"]["invalid_answers"] == 1 and out.attrs["llmframe"]["attempts"] == 2
    retry = sim.requests[1].body["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"sentiment": "ecstatic", "score": 9, "aspects": []}'}
    assert "did not match" in retry[-1]["content"] and "sentiment" in retry[-1]["content"]


def test_answers_that_never_validate_become_row_errors(gen, sim):
    sim.faults = Faults(schema_violation_rate=1.0)
    out = gen(reviews(3), "{text}", output=Review, invalid_retries=1)
    assert sim.count == 6 and out.attrs["llmframe"]["invalid_answers"] == 6
    assert out[["sentiment", "score", "aspects"]].isna().all().all()
    assert out["review_error"].str.startswith("invalid answer:").all()
    assert out["review_error"].str.endswith("(2 answers)").all()
    assert out.attrs["llmframe"]["failed"] == 3
    with pytest.raises(RunAborted, match="invalid answer"):
        gen(reviews(3), "{text}", output=Review, invalid_retries=0, errors="raise")


def test_reasks_send_back_a_bounded_part_of_only_the_latest_bad_answer(gen, sim):
    """A long bad answer sent back whole, and kept by every later re-ask, would overflow the context."""
    from llmframe import constants

    rambling = "I think the sentiment is rather positive, but let me explain at length. " * 2000
    sim.answer = lambda body: rambling
    out = gen(reviews(1), "{text}", output=Review, invalid_retries=2)
    assert out["review_error"].str.endswith("(3 answers)").all() and sim.count == 3
    first, *reasks = [r.body["messages"] for r in sim.requests]
    for messages in reasks:
        assert messages[: len(first)] == first, "each re-ask is the first request plus one correction"
        assert len(messages) == len(first) + 2 and [m["role"] for m in messages[-2:]] == ["assistant", "user"]
        sent_back = messages[-2]["content"]
        assert len(sent_back) <= constants.CORRECTION_ANSWER_CHARS + 100 < len(rambling)
        assert sent_back.startswith(rambling[:100]) and sent_back.endswith(rambling[-100:]) and "cut" in sent_back
    assert sum(len(m["content"]) for m in reasks[-1]) < len(rambling)


def test_near_json_is_repaired_without_asking_again(gen, sim):
    payload = {"sentiment": "neutral", "score": 3, "aspects": ["size"]}
    sim.answer = lambda body: f"Sure! Here you go:\n```json\n{json.dumps(payload)}\n```\nAnything else?"
    out = gen(reviews(2), "{text}", output=Review)
    assert sim.count == 2 and out["sentiment"].tolist() == ["neutral", "neutral"]


def test_schema_changes_reask_but_validator_changes_revalidate_from_cache(gen, sim):
    df = reviews(6)
    first = gen(df, "{text}", output=Review)
    assert sim.count == 6

    class Review2(Review):
        note: str

    gen(df, "{text}", output=Review2)
    assert sim.count == 12, "a different schema is a different question"

    class Strict(BaseModel):  # the same JSON Schema as Review, with a validator that rejects some answers
        sentiment: Literal["positive", "negative", "neutral"]
        score: int = Field(ge=1, le=5)
        aspects: list[str]

        @field_validator("score")
        @classmethod
        def at_least_three(cls, v):
            if v < 3:
                raise ValueError("score too low")
            return v

    Strict.__name__ = "Review"
    assert Strict.model_json_schema() == Review.model_json_schema()
    rejected = set(first.loc[first["score"] < 3, "text"])
    assert rejected and len(rejected) < 6, "the test needs some answers each way"
    out = gen(df, "{text}", output=Strict)
    asked = {r.body["messages"][-1 if len(r.body["messages"]) == 1 else 0]["content"] for r in sim.requests[12:]}
    assert asked == rejected, "only answers the new validator rejects are asked again"
    assert out.attrs["llmframe"]["cached"] == 6 - len(rejected)
    assert (out["score"].dropna() >= 3).all()


class Count(BaseModel):
    n: int
    x: float


def big_for_row_one(body, big=(12345678901234567890, 0.5)):
    """Numbers beyond their column (n beyond Int64) for the row 'review number 1', small ones elsewhere."""
    return '{"n": %s, "x": %s}' % (big if body["messages"][0]["content"].startswith("review number 1") else (7, 0.5))


def test_an_integer_beyond_int64_fails_its_row_only_also_from_an_old_cache(gen, sim):
    sim.answer = big_for_row_one
    objects = gen(reviews(3), "{text}", output=Count, output_mode="object", invalid_retries=0, strict=False)
    assert objects["count"].iloc[1].n == 12345678901234567890, "an object column holds any integer"
    assert sim.count == 3
    out = gen(reviews(3), "{text}", output=Count, invalid_retries=0, strict=False)
    # The cached answer cannot become an Int64 column: it is asked again (not a crash), and still does not fit.
    assert sim.count == 4 and out.attrs["llmframe"]["cached"] == 2
    assert out["n"].dtype == "Int64" and out["n"].tolist()[0::2] == [7, 7] and pd.isna(out["n"].iloc[1])
    assert pd.isna(out["x"].iloc[1]) and out["x"].iloc[0] == 0.5
    assert "field 'n': value 12345678901234567890 out of range for int64" in out["count_error"].iloc[1]
    assert out["count_error"].isna().tolist() == [True, False, True] and out.attrs["llmframe"]["failed"] == 1
    again = gen(reviews(3), "{text}", output=Count, invalid_retries=0, strict=False)
    assert again["n"].tolist()[0::2] == [7, 7] and sim.count == 5, "failures are never cached"


def test_json_schema_numbers_beyond_their_column_fail_their_row(gen, sim):
    schema = {"title": "Count", "type": "object", "required": ["n", "x"],
              "properties": {"n": {"type": "integer"}, "x": {"type": "number"}}}
    sim.answer = big_for_row_one
    out = gen(reviews(3), "{text}", output=schema, invalid_retries=0)
    assert "out of range for int64" in out["count_error"].iloc[1] and out["n"].dtype == "Int64"
    sim.answer = functools.partial(big_for_row_one, big=(1, 10**400))  # pydantic refuses such floats itself
    out = gen(reviews(3), "{text} again", output=schema, invalid_retries=0)
    assert "field 'x': value out of range for float64" in out["count_error"].iloc[1]
    assert out["x"].tolist()[0::2] == [0.5, 0.5] and pd.isna(out["x"].iloc[1])


def test_json_schema_date_times_in_any_iso_spelling_are_parsed_and_other_text_fails_its_row(gen, sim):
    schema = {"title": "Event", "type": "object", "required": ["at"],
              "properties": {"at": {"type": "string", "format": "date-time"}}}
    spellings = {"review number 0": "2024-05-06T07:08:09Z", "review number 1": "next tuesday",
                 "review number 2": "2024-05-06 09:08:09.5+02:00", "review number 3": "2024-05-06T07:08:09"}
    sim.answer = lambda body: '{"at": "%s"}' % spellings[body["messages"][0]["content"]]
    out = gen(reviews(4), "{text}", output=schema, invalid_retries=0)
    assert str(out["at"].dtype) == "datetime64[us, UTC]"
    assert out["at"].tolist()[::2] == [pd.Timestamp("2024-05-06T07:08:09Z"), pd.Timestamp("2024-05-06T07:08:09.5Z")]
    assert out["at"].iloc[3] == pd.Timestamp("2024-05-06T07:08:09Z"), "a naive date-time among aware ones is UTC"
    assert "field 'at': 'next tuesday' is not an ISO 8601 date-time" in out["event_error"].iloc[1]
    assert pd.isna(out["at"].iloc[1]) and out["event_error"].isna().tolist() == [True, False, True, True]


def test_output_mode_object_keeps_validated_instances(gen, sim):
    out = gen(reviews(2), "{text}", output=Review, output_mode="object")
    assert list(out.columns) == ["text", "review", "review_error"]
    assert all(isinstance(v, Review) for v in out["review"])


def test_json_schema_dict_output(gen, sim):
    schema = {
        "title": "Verdict",
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}, "confidence": {"type": "number"},
                       "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["label", "confidence", "tags"],
    }
    out = gen(reviews(3), "{text}", output=schema)
    assert list(out.columns) == ["text", "label", "confidence", "tags", "verdict_error"]
    assert isinstance(out["label"].dtype, pd.CategoricalDtype) and out["confidence"].dtype == "Float64"
    assert out["verdict_error"].isna().all()


def test_prefix_avoids_clashes_and_series_give_frames(gen, sim):
    df = reviews(2).assign(score=[1, 2])
    with pytest.raises(SchemaError, match="already has column"):
        gen(df, "{text}", output=Review)
    assert sim.count == 0
    out = gen(df, "{text}", output=Review, prefix="llm_")
    assert {"llm_sentiment", "llm_score", "llm_aspects", "llm_review_error"} <= set(out.columns)
    fields = gen(df["text"], "{}", output=Review)
    assert isinstance(fields, pd.DataFrame) and list(fields.columns) == ["sentiment", "score", "aspects"]
    objects = gen(df["text"], "{}", output=Review, output_mode="object")
    assert isinstance(objects, pd.Series) and isinstance(objects.iloc[0], Review)


class Verdict(BaseModel):
    verdict_error: str  # the name of the error column llmframe adds for a model named Verdict
    verdict_cost: float


def test_fields_named_like_the_added_columns_are_refused_with_a_fix_that_helps(gen, sim):
    with pytest.raises(SchemaError, match="verdict_error") as refused:
        gen(reviews(2), "{text}", output=Verdict, prefix="llm_")
    message = str(refused.value)
    assert "prefix= renames both" in message and "rename the field" in message and 'errors="raise"' in message
    assert "pass a prefix" not in message
    with pytest.raises(SchemaError, match="verdict_cost.*leave usage off"):
        gen(reviews(2), "{text}", output=Verdict, errors="raise", usage=True)
    assert sim.count == 0


def test_a_column_named_like_an_index_level_is_refused(gen, sim):
    df = reviews(2).set_axis(pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["group", "score"]))
    with pytest.raises(SchemaError, match=r"index already has level\(s\) named \['score'\]: pass prefix="):
        gen(df, "{text}", output=Review)
    with pytest.raises(ConfigError, match=r"index already has level\(s\) named \['group'\]"):
        gen(df, "{text}", output="group")
    assert sim.count == 0
    assert gen(df, "{text}", output=Review, prefix="llm_")["llm_score"].notna().all()


class Empty(BaseModel):
    pass


class FreeForm(BaseModel):
    counts: dict[str, int]


@pytest.mark.parametrize(
    "output, message",
    [
        (Empty, "no fields"),
        (FreeForm, "strict=False"),
        (123, "pydantic model class or a JSON Schema"),
        ({"type": "string"}, "object schema"),
        ({"type": "object", "properties": {"a": {"type": "nonsense"}}}, "invalid JSON Schema"),
    ],
    ids=["no-fields", "free-form-dict", "not-a-schema", "not-an-object", "invalid-schema"],
)
def test_unusable_schemas_fail_before_any_request(gen, sim, output, message):
    with pytest.raises(SchemaError, match=message):
        gen(reviews(2), "{text}", output=output)
    assert sim.count == 0


def test_free_form_dicts_work_without_strict_mode(gen, sim):
    out = gen(reviews(2), "{text}", output=FreeForm, strict=False)
    assert out["free_form_error"].isna().all()
    assert all(isinstance(v, dict) for v in out["counts"])
    assert sim.requests[0].body["response_format"]["json_schema"]["strict"] is False


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_a_server_that_refuses_json_schema_fails_each_row_at_once_naming_the_way_out(gen, sim, transport):
    """llama.cpp's Python server answers json_schema with HTTP 500: the request's fault, so it is not retried."""
    sim.faults = Faults(refused_formats=frozenset({"json_schema"}))
    out = gen(reviews(3), "{text}", output=Review, provider_options={"transport": transport})
    assert sim.count == 3 and out.attrs["llmframe"]["attempts"] == 3 and out.attrs["llmframe"]["retries"] == 0
    errors = out["review_error"]
    assert errors.str.startswith("HTTP 500").all() and errors.str.contains("Input should be 'text' or 'json_object'").all()
    assert errors.str.contains('pass structured="json_object"', regex=False).all()


def test_structured_json_object_sends_json_mode_with_the_schema_in_the_prompt(gen, sim):
    sim.faults = Faults(refused_formats=frozenset({"json_schema"}))
    seen = []

    def answer(body):
        seen.append(body)
        assert body["response_format"] == {"type": "json_object"}
        if "did not match" in body["messages"][-1]["content"]:
            return json.dumps({"sentiment": "positive", "score": 4, "aspects": ["fit"]})
        return '{"sentiment": "thrilled", "score": 4, "aspects": []}'  # not in the schema: asked again

    sim.answer = answer
    df = reviews(2)
    out = gen(df, "{text}", output=Review, structured="json_object", system="Be brief.")
    assert out["sentiment"].tolist() == ["positive", "positive"] and out["review_error"].isna().all()
    assert out.attrs["llmframe"]["invalid_answers"] == 2 and sim.count == 4
    first = seen[0]["messages"]
    assert first[0] == {"role": "system", "content": "Be brief."} and len(first) == 2
    assert first[1]["content"].startswith(df["text"].iloc[0] + "\n\nAnswer with only a JSON object")
    assert json.loads(first[1]["content"].split("JSON Schema:\n", 1)[1]) == Review.model_json_schema()

    sim.reset()
    sim.answer = answer
    sim.faults = Faults(refused_formats=frozenset({"json_schema"}))
    gen(df, "{text}", output=Review, structured="json_object", system="Be brief.")
    assert sim.count == 0, "answered from the cache"
    sim.reset()
    again = gen(df, "{text}", output=Review, system="Be brief.")  # json_schema: another request, another key
    assert sim.count == 2 and again["review_error"].isna().all()
    assert sim.requests[0].body["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("options, message", [
    ({"structured": "xml"}, "structured must be one of"),
    ({"structured": "json_object", "output": "answer"}, "applies to structured outputs"),
])
def test_bad_structured_values_fail_before_any_request(gen, sim, options, message):
    from llmframe.errors import ConfigError

    options = {"output": Review, **options}
    with pytest.raises(ConfigError, match=message):
        gen(reviews(1), "{text}", **options)
    assert sim.count == 0
