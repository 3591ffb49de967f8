"""Pytest fixtures for the simulator: `llm_simulator` (per test) and `llm_simulator_server` (per session)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from llmframe.testing.simulator import Simulator


@pytest.fixture(scope="session")
def llm_simulator_server() -> Iterator[Simulator]:
    """One simulator shared by the whole test run, stopped at its end."""
    # Imported here: the plugin is loaded by every pytest run once llmframe is installed,
    # and must not fail where the optional aiohttp dependency is missing.
    from llmframe.testing.simulator import Simulator

    with Simulator() as sim:
        yield sim


@pytest.fixture
def llm_simulator(llm_simulator_server: Simulator) -> Simulator:
    """The shared simulator, reset so each test starts with an empty log and default behaviour."""
    llm_simulator_server.reset()
    return llm_simulator_server
