"""Tools per row: the model calls the user's functions, through the real SDKs, against the simulator's tool mode."""

from __future__ import annotations

import asyncio
import json
import threading

import pandas as pd
import pydantic
import pytest

import llmframe
from llmframe import constants
from llmframe.errors import ConfigError
from llmframe.testing import ToolMode

# (model, how to reach the simulator, extra options): every protocol, and OpenAI through both transports.
PROTOCOLS = {
    "openai-http": ("openai:sim-model", "base_url", {}),
    "openai-sdk": ("openai:sim-model", "base_url", {"provider_options": {"transport": "sdk"}}),
    "anthropic": ("anthropic:claude-sim", "anthropic_base_url", {}),
    "gemini": ("gemini:gemini-sim", "gemini_base_url", {}),
}


@pytest.fixture
def tools_gen(sim):
    """generate against the simulator over a protocol, without a progress bar."""

    def call(frame, template, protocol="openai-http", **kwargs):
        model, url, extra = PROTOCOLS[protocol]
        options = {"model": model, "base_url": getattr(sim, url), "api_key": sim.api_key, "progress": False,
                   **extra, **kwargs}
        return frame.llm.generate(template, **options)

    return call


def lookup(name: str) -> dict:
    """Look a customer up by name.

    Args:
        name: the customer's name, as written
    """
    return {"name": name, "tier": "gold" if name.startswith("a") else "basic"}


FRAME = pd.DataFrame({"customer": ["anna", "bob", "carla", "dave"]})


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_each_row_answer_uses_its_own_tool_result_on_every_protocol(sim, tools_gen, protocol):
    sim.tool_mode = ToolMode("lookup")
    seen: list[str] = []

    def lookup(name: str) -> dict:
        """Look a customer up by name."""
        seen.append(name)
        return {"name": name, "tier": "gold" if name.startswith("a") else "basic"}

    out = tools_gen(FRAME, "{customer}", protocol, tools=[lookup], transcript=True, usage=True)
    for name, answer in zip(FRAME["customer"], out["response"]):  # row i's answer carries row i's result
        expected = {"name": name, "tier": "gold" if name.startswith("a") else "basic"}
        assert answer == "lookup: " + json.dumps(expected, separators=(",", ":"))
    assert sorted(seen) == sorted(FRAME["customer"])  # each tool call got its own row's argument, once
    assert out["response_error"].isna().all()
    for name, text in zip(FRAME["customer"], out["response_transcript"]):
        (call,) = json.loads(text)
        assert call["tool"] == "lookup" and call["arguments"] == {"name": name} and not call["error"]
        assert json.loads(call["result"])["name"] == name
    assert sim.count == 2 * len(FRAME)  # every row: one turn calling the tool, one answering
    # Every turn is billed: the row's usage is the sum of its two requests' tokens, as the server counted them.
    billed = {}
    for entry in sim.requests:
        prompt = entry.chat["messages"][0]["content"]
        billed[prompt] = tuple(a + b for a, b in zip(billed.get(prompt, (0, 0)), entry.billed))
    assert list(out["response_input_tokens"]) == [billed[n][0] for n in FRAME["customer"]]
    assert list(out["response_output_tokens"]) == [billed[n][1] for n in FRAME["customer"]]
    report = out.llm.report
    assert report["tool_calls"] == len(FRAME) and report["tool_errors"] == 0
    assert report["attempts"] == 2 * len(FRAME)


def test_the_declared_schema_comes_from_the_signature_hints_and_docstring(sim, tools_gen):
    sim.tool_mode = ToolMode("lookup")
    tools_gen(FRAME.head(1), "{customer}", tools=[lookup])
    (declared,) = sim.requests[0].body["tools"]
    assert declared["type"] == "function"
    function = declared["function"]
    assert function["name"] == "lookup"
    assert function["description"] == "Look a customer up by name."
    assert function["parameters"]["required"] == ["name"]
    assert function["parameters"]["properties"]["name"] == {"description": "the customer's name, as written",
                                                            "title": "Name", "type": "string"}


class Query(pydantic.BaseModel):
    name: str
    limit: int = 3


@pytest.mark.parametrize("protocol", ["openai-http", "anthropic", "gemini"])
def test_async_tools_and_pydantic_model_arguments(sim, tools_gen, protocol):
    got: list = []

    async def search(query: Query) -> list[str]:
        """Search the orders of a customer."""
        got.append(query)
        await asyncio.sleep(0)
        return [f"{query.name}-order-{k}" for k in range(query.limit)]

    sim.tool_mode = ToolMode("search", arguments=lambda tool, prompt, schema: {"query": {"name": prompt, "limit": 2}})
    out = tools_gen(FRAME.head(2), "{customer}", protocol, tools=[search])
    assert all(isinstance(q, Query) for q in got) and sorted(q.name for q in got) == ["anna", "bob"]
    assert list(out["response"]) == ['search: ["anna-order-0","anna-order-1"]', 'search: ["bob-order-0","bob-order-1"]']


def test_parallel_calls_in_one_turn(sim, tools_gen):
    both = threading.Barrier(2, timeout=30)  # each call waits for the other: they must run at the same time

    def price(name: str) -> str:
        """A price."""
        both.wait()
        return f"price of {name}"

    def stock(name: str) -> str:
        """Stock."""
        both.wait()
        return f"stock of {name}"

    sim.tool_mode = ToolMode(["price", "stock"])
    out = tools_gen(FRAME.head(1), "{customer}", tools=[price, stock], transcript=True, max_concurrency=1)
    assert out["response"][0] == "price+stock: price of anna | stock of anna"
    assert [c["turn"] for c in json.loads(out["response_transcript"][0])] == [1, 1]
    assert sim.count == 2


def test_a_raising_tool_is_an_error_result_for_the_model_and_counted(sim, tools_gen):
    def lookup(name: str) -> dict:
        """Fails for bob."""
        if name == "bob":
            raise KeyError("no such customer")
        return {"name": name}

    sim.tool_mode = ToolMode("lookup")
    out = tools_gen(FRAME.head(2), "{customer}", tools=[lookup], transcript=True)
    assert out["response"][0] == 'lookup: {"name":"anna"}'
    assert out["response"][1] == "lookup: error: lookup raised KeyError: 'no such customer'"
    assert out["response_error"].isna().all()  # the model got the error and answered: the row did not fail
    assert json.loads(out["response_transcript"][1])[0]["error"] is True
    assert out.llm.report["tool_errors"] == 1 and out.llm.report["tool_calls"] == 2


def test_hanging_tools_are_cut_by_tool_timeout(sim, tools_gen):
    release = threading.Event()

    def slow_sync(name: str) -> str:
        """Hangs."""
        release.wait(60)
        return "late"

    async def slow_async(name: str) -> str:
        """Hangs too."""
        await asyncio.sleep(60)
        return "late"

    try:
        for tool in (slow_sync, slow_async):
            sim.reset()
            sim.tool_mode = ToolMode(tool.__name__)
            out = tools_gen(FRAME.head(1), "{customer}", tools=[tool], tool_timeout=0.2, cache=False)
            assert out["response"][0] == (f"{tool.__name__}: error: {tool.__name__} took longer than "
                                          "tool_timeout=0.2 s and was cut off")
    finally:
        release.set()


def test_tool_output_sent_back_is_capped(sim, tools_gen):
    def dump(name: str) -> str:
        """A lot of text."""
        return "x" * (3 * constants.TOOL_OUTPUT_CHARS)

    sim.tool_mode = ToolMode("dump")
    tools_gen(FRAME.head(1), "{customer}", tools=[dump])
    sent = [m for m in sim.requests[-1].body["messages"] if m["role"] == "tool"][0]["content"]
    assert sent.startswith("x" * constants.TOOL_OUTPUT_CHARS)
    assert len(sent) < constants.TOOL_OUTPUT_CHARS + 100
    assert f"{2 * constants.TOOL_OUTPUT_CHARS} more characters cut" in sent


def test_max_turns_reached_is_the_rows_error(sim, tools_gen):
    sim.tool_mode = ToolMode("lookup")
    out = tools_gen(FRAME.head(2), "{customer}", tools=[lookup], max_turns=1, transcript=True)
    assert out["response"].isna().all()
    assert out["response_error"][0].startswith("no answer after max_turns=1: the model was still calling tools")
    assert json.loads(out["response_transcript"][0])[0]["arguments"] == {"name": "anna"}  # kept for the audit
    assert sim.count == 2


def test_unknown_tools_and_bad_arguments_are_error_results(sim, tools_gen):
    def lookup(name: int) -> str:
        """Wants a number."""
        return str(name)

    sim.tool_mode = ToolMode("lookup")
    out = tools_gen(FRAME.head(1), "{customer}", tools=[lookup])
    assert out["response"][0].startswith("lookup: error: invalid arguments for lookup")


class Opaque:
    """No JSON schema for this one."""


class Verdict(pydantic.BaseModel):
    who: str
    tier: str


@pytest.mark.parametrize("protocol", ["openai-http", "anthropic", "gemini"])
def test_structured_output_after_tools(sim, tools_gen, protocol):
    def final(prompt: str, results: list[str]) -> str:
        found = json.loads(results[0])
        return json.dumps({"who": found["name"], "tier": found["tier"]})

    sim.tool_mode = ToolMode("lookup", answer=final)
    out = tools_gen(FRAME, "{customer}", protocol, tools=[lookup], output=Verdict)
    assert list(out["who"]) == list(FRAME["customer"])  # each row's own tool result
    assert list(out["tier"]) == ["gold", "basic", "basic", "basic"]


def test_the_final_answer_is_cached_under_the_tools_names_schemas_and_version(sim, tools_gen):
    calls: list[str] = []

    def lookup(name: str) -> str:
        """Counts."""
        calls.append(name)
        return name.upper()

    sim.tool_mode = ToolMode("lookup")
    first = tools_gen(FRAME, "{customer}", tools=[lookup], transcript=True)
    again = tools_gen(FRAME, "{customer}", tools=[lookup], transcript=True)
    assert sim.count == 2 * len(FRAME) and len(calls) == len(FRAME)  # the re-run sent nothing, ran no tool
    pd.testing.assert_frame_equal(first, again)  # the transcript is cached with the answer
    tools_gen(FRAME, "{customer}", tools=[lookup], tools_version="2024-06-02")  # tomorrow's data: asked again
    assert len(calls) == 2 * len(FRAME)

    def lookup(name: str, exact: bool = True) -> str:  # noqa: F811 - the same name, another schema
        """Counts."""
        calls.append(name)
        return name.upper()

    tools_gen(FRAME, "{customer}", tools=[lookup])
    assert len(calls) == 3 * len(FRAME)
    tools_gen(FRAME, "{customer}", tools=[lookup], cache=False)  # live tools
    assert len(calls) == 4 * len(FRAME)
    plain = tools_gen(FRAME, "{customer}")  # without tools: its own key, not a tools answer
    assert not plain["response"][0].startswith("lookup")


def test_estimate_states_the_turns_assumption_and_max_cost_reserves_every_turn(sim):
    prices = {"openai:sim-model": {"input_mtok": 1.0, "output_mtok": 2.0}}
    plain = FRAME.llm.estimate("{customer}", model="openai:sim-model", max_tokens=50, prices=prices)
    tooled = FRAME.llm.estimate("{customer}", model="openai:sim-model", max_tokens=50, prices=prices,
                                tools=[lookup], max_turns=3)
    assert tooled.cost[0] == plain.cost[0]  # the low end: one turn, no tool called
    assert tooled.cost[1] > 3 * plain.cost[1]  # the high end: three turns, each re-sending more
    assert tooled.output_tokens[1] == 3 * plain.output_tokens[1]
    assert any("max_turns=3 turns per row" in note for note in tooled.notes)


def test_bad_tools_are_refused_before_anything_is_sent(sim, tools_gen):
    def untyped(name):
        return name

    def star(*names: str) -> str:
        return ""

    class Local:
        pass

    def local(thing: Local) -> str:
        return ""

    def opaque(thing: Opaque) -> str:
        return ""

    def other():
        return ""

    other.__name__ = "lookup"
    cases = [
        ([untyped], "tool untyped, parameter 'name' has no type hint"),
        ([star], "tool star, parameter 'names': *args and **kwargs"),
        ([opaque], "tool opaque, parameter 'thing': its type has no JSON schema"),
        ([local], "tool local, parameter 'thing': its type hint 'Local' cannot be resolved"),
        ([lookup, other], "two tools are named 'lookup'"),
        ([lambda x: x], "'<lambda>' cannot be a tool's name"),
        (lookup, "tools must be a list of functions"),
    ]
    for tools, message in cases:
        with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
            tools_gen(FRAME, "{customer}", tools=tools)
    with pytest.raises(ConfigError, match="native batch job cannot hold"):
        tools_gen(FRAME, "{customer}", tools=[lookup], mode="batch")
    with pytest.raises(ConfigError, match="max_turns must be an integer >= 1"):
        tools_gen(FRAME, "{customer}", tools=[lookup], max_turns=0)
    assert sim.count == 0


def test_a_provider_that_cannot_call_tools_is_refused(sim, tools_gen, llm_tiny_model):
    with pytest.raises(ConfigError, match="the transformers provider cannot call tools") as refused:
        FRAME.llm.generate("{customer}", model=f"transformers:{llm_tiny_model}", tools=[lookup], progress=False)
    assert "--enable-auto-tool-choice" in str(refused.value)


def test_mode_auto_runs_a_tools_call_online(sim, tools_gen):
    sim.tool_mode = ToolMode("lookup")
    out = tools_gen(FRAME, "{customer}", tools=[lookup], mode="auto")
    assert out.llm.report["mode"] == "online" and out["response"].notna().all()


def test_polars_face_calls_tools_too(sim):
    pl = pytest.importorskip("polars")
    sim.tool_mode = ToolMode("lookup")
    frame = pl.DataFrame({"customer": ["anna", "bob"]})
    out = frame.llm.generate("{customer}", model="openai:sim-model", base_url=sim.base_url, api_key=sim.api_key,
                             tools=[lookup], progress=False)
    assert out["response"].to_list()[1] == 'lookup: {"name":"bob","tier":"basic"}'


@pytest.mark.parametrize("protocol", ["openai-http", "anthropic", "gemini"])
def test_a_failed_turn_is_retried_alone_and_tools_run_once_per_row(sim, tools_gen, protocol):
    from llmframe.testing import Faults

    calls: list[str] = []

    def lookup(name: str) -> str:
        """Counts."""
        calls.append(name)
        return name.upper()

    frame = pd.DataFrame({"customer": [f"c{i}" for i in range(12)]})
    sim.tool_mode = ToolMode("lookup")
    sim.faults = Faults(error_rates={500: 0.3}, seed=3)
    out = tools_gen(frame, "{customer}", protocol, tools=[lookup], max_attempts=10)
    assert list(out["response"]) == [f"lookup: C{i}" for i in range(12)]
    assert sorted(calls) == sorted(frame["customer"])  # a retried turn re-sends the turn, never re-runs a tool
    assert out.llm.report["retries"] > 0


def test_a_transcript_column_the_frame_has_is_refused(sim, tools_gen):
    frame = FRAME.assign(response_transcript="mine")
    with pytest.raises(ConfigError, match="already has a column 'response_transcript'"):
        tools_gen(frame, "{customer}", tools=[lookup], transcript=True)
    assert sim.count == 0


def test_partials_are_refused_by_name():
    import functools

    with pytest.raises(ConfigError, match="cannot be a tool's name"):
        FRAME.llm.estimate("{customer}", model="openai:m", tools=[functools.partial(lookup, "x")])


def test_max_cost_reserves_every_turn_of_a_row(sim, tools_gen):
    from llmframe.errors import BudgetExceeded

    sim.tool_mode = ToolMode("lookup")
    prices = {"openai:sim-model": {"input_mtok": 1.0, "output_mtok": 2.0}}
    # One turn of a row reserves about $0.0001; all five of them (tool results at their cap) about $0.04.
    plain = tools_gen(FRAME, "{customer}", max_tokens=50, prices=prices, max_cost=0.01)
    assert plain["response"].notna().all()
    sent = sim.count
    with pytest.raises(BudgetExceeded):
        tools_gen(FRAME, "{customer}", tools=[lookup], max_tokens=50, prices=prices, max_cost=0.01)
    assert sim.count == sent  # no row could be afforded at its worst: none was sent
    out = tools_gen(FRAME, "{customer}", tools=[lookup], max_tokens=50, prices=prices, max_cost=1.0, usage=True)
    assert out["response_cost"].sum() == pytest.approx(
        (out["response_input_tokens"].sum() * 1.0 + out["response_output_tokens"].sum() * 2.0) / 1e6)


def test_a_return_type_that_cannot_be_resolved_is_no_matter(sim, tools_gen):
    class Local:
        pass

    def find(name: str) -> Local:
        """Returns a local type, which is never part of the schema."""
        return name

    sim.tool_mode = ToolMode("find")
    out = tools_gen(FRAME.head(1), "{customer}", tools=[find])
    assert out["response"][0] == "find: anna"


def test_a_later_transcript_run_finds_the_transcript_in_the_cache(sim, tools_gen):
    sim.tool_mode = ToolMode("lookup")
    first = tools_gen(FRAME, "{customer}", tools=[lookup])
    assert "response_transcript" not in first
    again = tools_gen(FRAME, "{customer}", tools=[lookup], transcript=True)
    assert sim.count == 2 * len(FRAME)  # answered from the cache
    assert [json.loads(t)[0]["arguments"]["name"] for t in again["response_transcript"]] == list(FRAME["customer"])


def test_llmframe_run_takes_tools_as_module_functions(sim, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    (tmp_path / "crm.py").write_text(
        "def tier(name: str) -> str:\n"
        "    \"\"\"The customer's tier.\"\"\"\n"
        "    return {'anna': 'gold'}.get(name, 'basic')\n"
    )
    FRAME.to_parquet(tmp_path / "in.parquet")
    sim.tool_mode = ToolMode("tier")
    command = [shutil.which("llmframe")] if shutil.which("llmframe") else [sys.executable, "-m", "llmframe"]
    done = subprocess.run([*command, "run", "in.parquet", "out.parquet", "-t", "{customer}", "--model",
                           "openai:sim-model", "--base-url", sim.base_url, "--api-key", sim.api_key,
                           "--tool", "crm:tier", "--max-turns", "3", "--transcript", "--tools-version", "v1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    back = pd.read_parquet(tmp_path / "out.parquet")
    assert list(back["response"]) == ["tier: gold", "tier: basic", "tier: basic", "tier: basic"]
    assert json.loads(back["response_transcript"][0])[0]["arguments"] == {"name": "anna"}
    from llmframe.apps import provenance

    ((_, recorded, _),) = provenance.read(tmp_path / "out.parquet")
    assert recorded["parameters"]["tools"] == ["crm:tier"] and recorded["parameters"]["tools_version"] == "v1"
    bad = subprocess.run([*command, "run", "in.parquet", "out2.parquet", "-t", "{customer}", "--model",
                          "openai:sim-model", "--base-url", sim.base_url, "--api-key", sim.api_key,
                          "--tool", "crm:nothing"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ))
    assert bad.returncode != 0 and "--tool 'crm:nothing': cannot load it" in bad.stderr


def test_an_invalid_structured_answer_after_tools_is_asked_again(sim, tools_gen):
    answered: list[str] = []

    def final(prompt: str, results: list[str]) -> str:
        answered.append(prompt)
        found = json.loads(results[0])
        return "not json" if len(answered) == 1 else json.dumps({"who": found["name"], "tier": found["tier"]})

    sim.tool_mode = ToolMode("lookup", answer=final)
    out = tools_gen(FRAME.head(1), "{customer}", tools=[lookup], output=Verdict, max_concurrency=1)
    assert (out["who"][0], out["tier"][0]) == ("anna", "gold")
    assert out.llm.report["invalid_answers"] == 1 and sim.count == 3  # call, invalid answer, corrected answer
    assert "did not match the required format" in sim.requests[-1].body["messages"][-1]["content"]


def test_async_tools_run_on_the_loop_and_sync_tools_in_the_tool_threads(sim, tools_gen):
    where: dict[str, str] = {}

    async def on_loop(name: str) -> str:
        """Async."""
        asyncio.get_running_loop()  # raises outside a running loop
        where["async"] = threading.current_thread().name
        return "a"

    def in_thread(name: str) -> str:
        """Sync."""
        where["sync"] = threading.current_thread().name
        return "s"

    sim.tool_mode = ToolMode(["on_loop", "in_thread"])
    out = tools_gen(FRAME.head(1), "{customer}", tools=[on_loop, in_thread])
    assert out["response"][0] == "on_loop+in_thread: a | s"
    assert where["sync"].startswith("llmframe-tool") and not where["async"].startswith("llmframe-tool")
