"""A cache that cannot be used (damaged, truncated, read-only, a file) is an error naming it and the fixes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import llmframe
from llmframe.stores.diskcache import Store, open_store
from llmframe.errors import CacheDamaged, CacheError, LLMFrameError

from .test_cache import cli


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": [f"row {i}" for i in range(n)]})


def damage(cache_dir) -> str:
    cache_dir.mkdir(parents=True, exist_ok=True)
    db = cache_dir / "cache.db"
    db.write_bytes(b"this is not an SQLite database, it was overwritten " * 100)
    return str(db)


def test_a_damaged_database_is_named_with_its_fixes_before_anything_is_sent(gen, sim, cache_dir):
    db = damage(cache_dir)
    with pytest.raises(CacheDamaged) as caught:
        gen(frame(3), "{x}")
    message = str(caught.value)
    assert isinstance(caught.value, LLMFrameError)
    assert db in message and "cache=False" in message and "llmframe cache clear --force" in message
    assert sim.count == 0
    with pytest.raises(CacheDamaged, match="is damaged"):
        llmframe.cache_stats(cache_dir)
    out = gen(frame(3), "{x}", cache=False)  # the fix the message gives first
    assert out["response"].notna().all()


def test_a_database_damaged_while_open_is_named_too(cache_dir):
    store = Store(str(cache_dir))
    store.set_many([("a", "1")])
    store.close()  # the next call opens a new connection, as another process would
    damage(cache_dir)
    with pytest.raises(CacheDamaged, match="cache.db is damaged"):
        store.get_many(["a"])
    with pytest.raises(CacheDamaged):
        store.set_many([("b", "2")])


def test_cli_names_a_damaged_cache_and_force_resets_it(gen, sim, cache_dir):
    db = damage(cache_dir)
    (cache_dir / "batches").mkdir()  # batch job state lives next to the database: a reset keeps it
    for args in (["stats"], ["clear", "--yes"]):
        out = cli(*args, "--cache-dir", str(cache_dir))
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr and db in out.stderr and "--force" in out.stderr
    out = cli("clear", "--force", "--model", "openai:m", "--cache-dir", str(cache_dir))
    assert out.returncode == 2 and "--force resets the whole cache" in out.stderr
    out = cli("clear", "--force", "--cache-dir", str(cache_dir))
    assert out.returncode == 2 and "--yes" in out.stderr, "a reset is a whole clear: it asks too"
    out = cli("clear", "--yes", "--force", "--cache-dir", str(cache_dir))
    assert out.returncode == 0, out.stderr
    assert "Reset the damaged cache" in out.stdout
    assert not os.path.exists(db) and (cache_dir / "batches").is_dir()
    out = gen(frame(3), "{x}")
    assert out["response"].notna().all() and llmframe.cache_stats(cache_dir)["entries"] == 3
    assert cli("stats", "--cache-dir", str(cache_dir)).returncode == 0


def test_clear_cache_force_resets_a_damaged_cache_in_python(cache_dir):
    damage(cache_dir)
    with pytest.raises(CacheDamaged):
        llmframe.clear_cache(cache_dir)
    assert llmframe.clear_cache(cache_dir, force=True) == 0
    assert llmframe.cache_stats(cache_dir)["entries"] == 0
    open_store(cache_dir).set_many([("a", "1")])
    assert llmframe.clear_cache(cache_dir, force=True) == 1, "an intact cache is cleared as without force"


TRUNCATED = textwrap.dedent(
    """
    import sys
    from llmframe.stores.diskcache import Store

    store = Store(sys.argv[1])
    keys = [f"key {i}" for i in range(20000)]
    store.set_many([(key, "an answer of a few hundred bytes " * 8) for key in keys])
    print("READY", flush=True)
    sys.stdin.readline()  # the parent truncates the file meanwhile
    try:
        found = sum(value is not None for start in range(0, len(keys), 1000)
                    for value in store.get_many(keys[start:start + 1000]))
        store.set_many([("new", "value")])
        print("READ", found, flush=True)
    except Exception as exc:  # what a damaged file may raise: CacheDamaged, the error that names it
        print("ERROR", type(exc).__name__, exc, flush=True)
    """
)


def test_a_database_truncated_under_a_running_process_does_not_kill_it(cache_dir):
    child = subprocess.Popen([sys.executable, "-c", TRUNCATED, str(cache_dir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "READY", child.communicate(timeout=60)
        os.truncate(cache_dir / "cache.db", 8192)
        out, err = child.communicate("go\n", timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, f"exit status {child.returncode} (-7 is SIGBUS): {err}"
    assert out.startswith(("READ ", "ERROR CacheDamaged")), (out, err)


def test_a_file_as_the_cache_directory_is_refused(gen, sim, tmp_path):
    path = tmp_path / "not-a-directory"
    path.write_text("x")
    with pytest.raises(CacheError, match="is a file, not a directory") as caught:
        gen(frame(3), "{x}", cache_dir=str(path))
    assert str(path) in str(caught.value) and sim.count == 0
    with pytest.raises(CacheError, match="is a file"):
        llmframe.cache_stats(path)
    with pytest.raises(CacheError, match="is a file"):
        llmframe.clear_cache(path)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be created in, even by root (chattr +i); skipped where neither way works."""
    path = tmp_path / "read-only"
    path.mkdir()
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    if not immutable:
        path.chmod(0o555)
    try:
        try:
            (path / "probe").touch()
        except OSError:
            yield path
        else:
            pytest.skip("cannot make a read-only directory here")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


def test_a_read_only_cache_directory_is_named_with_its_fixes(gen, sim, read_only_dir):
    with pytest.raises(CacheError) as caught:
        gen(frame(3), "{x}", cache_dir=str(read_only_dir))
    message = str(caught.value)
    assert str(read_only_dir) in message and "writable" in message and "cache=False" in message
    assert not isinstance(caught.value, CacheDamaged) and sim.count == 0
