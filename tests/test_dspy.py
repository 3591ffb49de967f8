"""llmframe.dspy.LM: a DSPy program against the simulator, its calls through llmframe's cache and retries."""

from __future__ import annotations

import pytest

dspy = pytest.importorskip("dspy")

from llmframe.errors import ConfigError  # noqa: E402
from llmframe.testing import SimulatedError  # noqa: E402


@pytest.fixture
def lm(sim):
    import llmframe.dspy

    return llmframe.dspy.LM("openai:sim-model", base_url=sim.base_url, api_key=sim.api_key, temperature=0)


def test_a_dspy_programs_batch_goes_through_llmframe(lm, sim):
    sim.answer = lambda body: "[[ ## answer ## ]]\nyes\n\n[[ ## completed ## ]]"
    program = dspy.Predict("question -> answer")
    examples = [dspy.Example(question=f"Is {n} prime?").with_inputs("question") for n in range(12)]
    with dspy.context(lm=lm):
        results = program.batch(examples, num_threads=4)
    assert [r.answer for r in results] == ["yes"] * 12 and sim.count == 12
    assert all(r.body["temperature"] == 0.0 for r in sim.requests)
    with dspy.context(lm=lm):
        again = program.batch(examples, num_threads=4)
    assert [r.answer for r in again] == ["yes"] * 12 and sim.count == 12  # every call from llmframe's cache


def test_retries_are_llmframes(lm, sim):
    seen: dict[str, int] = {}

    def answer(body):
        prompt = body["messages"][-1]["content"]
        seen[prompt] = seen.get(prompt, 0) + 1
        if seen[prompt] == 1:
            raise SimulatedError(503, "busy", headers={"retry-after-ms": "50"})
        return "[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"

    sim.answer = answer
    with dspy.context(lm=lm):
        result = dspy.Predict("question -> answer")(question="hello?")
    assert result.answer == "ok" and sim.count == 2


def test_the_async_path(lm, sim):
    import asyncio

    sim.answer = lambda body: "[[ ## answer ## ]]\nasync\n\n[[ ## completed ## ]]"

    async def ask():
        with dspy.context(lm=lm):
            return await dspy.Predict("question -> answer").acall(question="and now?")

    assert asyncio.run(ask()).answer == "async"


def test_a_model_name_in_litellms_spelling_is_refused():
    import llmframe.dspy

    with pytest.raises(ConfigError, match="'provider:model'"):
        llmframe.dspy.LM("openai/gpt-4o-mini")
