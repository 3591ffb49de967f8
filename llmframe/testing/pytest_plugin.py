"""Pytest fixtures: the simulator (`llm_simulator` per test, `llm_simulator_server` per session), `llm_tiny_model`,
`llm_tiny_encoder`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .simulator import Simulator


@pytest.fixture(scope="session")
def llm_simulator_server() -> Iterator[Simulator]:
    """One simulator shared by the whole test run, stopped at its end."""
    # Imported here: the plugin is loaded by every pytest run once llmframe is installed,
    # and must not fail where the optional aiohttp dependency is missing.
    from .simulator import Simulator

    with Simulator() as sim:
        yield sim


@pytest.fixture
def llm_simulator(llm_simulator_server: Simulator) -> Simulator:
    """The shared simulator, reset so each test starts with an empty log and default behaviour."""
    llm_simulator_server.reset()
    return llm_simulator_server


@pytest.fixture(scope="session")
def llm_tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """A tiny chat model (tokenizer and weights) built offline once per test run; its folder's path.

    Use it as model=f"transformers:{path}" or f"vllm:{path}". Needs the transformers extra.
    """
    import os

    pytest.importorskip("transformers", reason="the tiny model needs the transformers extra: "
                                               "pip install 'llmframe[transformers]'")
    from .tiny_model import build_tiny_model

    os.environ["HF_HUB_OFFLINE"] = "1"  # a test run never reaches a model hub; loading is by path
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def llm_tiny_encoder(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random BERT encoder built offline once per test run (no pooling config: mean pooling); its path.

    Use it as model=f"transformers:{path}" in df.llm.embed. Needs the transformers extra.
    """
    import os

    pytest.importorskip("transformers", reason="the tiny encoder needs the transformers extra: "
                                               "pip install 'llmframe[transformers]'")
    from .tiny_model import build_tiny_encoder

    os.environ["HF_HUB_OFFLINE"] = "1"
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))
