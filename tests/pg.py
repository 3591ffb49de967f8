"""Fixtures for a real PostgreSQL server (llmframe.testing.postgres): one throwaway cluster per test run.

Without PostgreSQL (or psycopg) the tests that use them are skipped with the reason, unless
LLMFRAME_REQUIRE_POSTGRES=1 (set by .ci/run) makes them fail: CI never skips them.
"""

from __future__ import annotations

import os
import uuid

import pytest

from llmframe.testing.postgres import REQUIRE_ENV_VAR, Cluster, binaries


def unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'llmframe[postgresql]'"
    if binaries() is None:
        return "PostgreSQL is not installed: apt-get install postgresql (or set LLMFRAME_PG_BIN to its bin directory)"
    return None


def need_postgres() -> None:
    """Skip loudly (or fail, in CI) where no server can be started."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV_VAR) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV_VAR}=1: the PostgreSQL tests must run)")
    pytest.skip(f"SKIPPED, NO POSTGRESQL: {reason}; the shared-cache tests did not run")


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL server for the whole run, stopped and deleted at its end (pass or fail)."""
    need_postgres()
    cluster = Cluster()
    try:
        yield cluster.start()
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster):
    """A fresh database on the session's server: its postgresql:// URL (as the superuser, with a password)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_cluster.create_database(name)
    yield url
    from llmframe.stores import postgresql

    for key, store in list(postgresql._open.items()):  # this process's pools on that database
        if key.endswith(f"/{name}"):
            store.close()
    pg_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
