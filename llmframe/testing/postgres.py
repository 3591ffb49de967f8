"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temporary directory, one server on loopback.

The server runs as an unprivileged user (postgres, or nobody, when the caller is root: PostgreSQL refuses
root), listens on 127.0.0.1 and a socket in its own directory, and is told to stop if the process that
started it dies (PR_SET_PDEATHSIG), so a killed test run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REQUIRE_ENV_VAR = "LLMFRAME_REQUIRE_POSTGRES"  # set by .ci/run: a missing PostgreSQL fails the tests, not skips them
_PR_SET_PDEATHSIG = 1


def binaries() -> Path | None:
    """The directory of initdb and postgres (LLMFRAME_PG_BIN, PATH, or Debian's newest), or None."""
    configured = os.environ.get("LLMFRAME_PG_BIN")
    if configured:
        return Path(configured) if (Path(configured) / "initdb").exists() else None
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runner() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when this process is root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _die_with_parent() -> None:
    """In the server's process, after its user is set: stop (fast shutdown) when the starting process dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


class Cluster:
    """One PostgreSQL server in a temporary directory, with a password-protected superuser; stop() removes it."""

    def __init__(self, *, durable: bool = False, user: str = "llmframe"):
        bindir = binaries()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL's initdb was not found (install Debian's postgresql package)")
        self.bindir, self.user, self.durable = bindir, user, durable
        self.password = "pw-" + secrets.token_hex(8)
        self.root = Path(tempfile.mkdtemp(prefix="llmframe-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sockets"
        self.sockets.mkdir()
        self.port = _free_port()
        self._as = _runner()
        if self._as is not None:
            for path in (self.root, self.sockets):
                os.chown(path, *self._as)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._as is not None:
            os.chown(pwfile, *self._as)
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", user, f"--pwfile={pwfile}", "-E", "UTF8",
                   "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "--no-instructions"])
        pwfile.unlink()
        self._server: subprocess.Popen | None = None

    def _ids(self) -> dict:
        return {} if self._as is None else {"user": self._as[0], "group": self._as[1], "extra_groups": []}

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True, **self._ids())
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr or done.stdout}")

    def start(self, timeout: float = 120.0) -> Cluster:
        """Start the server and wait until it accepts connections."""
        settings = [] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                            "-c", "full_page_writes=off"]
        self._server = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sockets),
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", *settings],
            cwd=self.root, stdout=subprocess.DEVNULL, stderr=open(self.root / "server.log", "ab"),
            preexec_fn=_die_with_parent, **self._ids())
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self._server.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited ({self._server.returncode}): {self.log()}")
            try:
                psycopg.connect(self.url(), connect_timeout=5).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log(self) -> str:
        """The server's log so far."""
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def url(self, database: str = "postgres", *, user: str | None = None, password: str | None = None) -> str:
        """A postgresql:// URL for the database, as the superuser unless told otherwise."""
        who = user or self.user
        secret = self.password if user is None and password is None else password
        auth = f"{who}:{secret}" if secret else who
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres", params: tuple | None = None) -> list:
        """Run one statement as the superuser; the rows it returns (if any)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str) -> str:
        """A new empty database; its URL (as the superuser)."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server (fast shutdown: sessions are cut), keeping the data directory for a later start()."""
        server, self._server = self._server, None
        if server is None or server.poll() is not None:
            return
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()
