"""The shared answer store: PostgreSQL through psycopg 3 and a connection pool, the same keys and values as diskcache.

One table (constants.PG_TABLE: key, value, and the model and time read from the value, for stats and
pruning on the server) and a one-row format table, in the role's search_path. Lookups are one
`key = ANY(%b)` query per chunk (parameters in binary); writes are one `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
NOTHING` per batch, so writers racing on a key lose nothing and count the duplicate; a refresh deletes
then inserts, so the role needs SELECT, INSERT and DELETE only. The URL's password never appears in a
message: every driver error is scrubbed before it is raised.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence

from .. import constants
from ..cacheurl import CacheURL, scrub
from ..durations import parse_duration
from ..errors import CacheError, StoreUnavailable
from .base import BaseStore, check_model, decode
from .diskcache import resolve_directory

_T, _META = constants.PG_TABLE, constants.PG_META_TABLE
_CREATE = [
    f"CREATE TABLE IF NOT EXISTS {_T} (key text PRIMARY KEY, value text NOT NULL, model text, created float8)",
    f"CREATE INDEX IF NOT EXISTS {_T}_model_created ON {_T} (model, created)",
    f"CREATE TABLE IF NOT EXISTS {_META} (name text PRIMARY KEY, value text NOT NULL)",
    f"INSERT INTO {_META} VALUES ('format', '{constants.CACHE_RECORD_FORMAT}') ON CONFLICT (name) DO NOTHING",
]
_GET = f"SELECT key, value FROM {_T} WHERE key = ANY(%b)"  # %b: the keys are sent in binary
_PUT = (f"INSERT INTO {_T} (key, value, model, created) "
        "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[]) ON CONFLICT (key) DO NOTHING")
_DROP = f"DELETE FROM {_T} WHERE key = ANY(%b)"
_PAGE = f"SELECT key, value FROM {_T} WHERE key > %s ORDER BY key LIMIT %s"
_RIGHTS = ("SELECT", "INSERT", "DELETE")
_BINARY = "~"  # the text column's mark of a binary value, in base64

_open: dict[str, PostgresStore] = {}
_open_lock = threading.Lock()


def _written(value: str | bytes) -> str:
    """A value as the text column holds it: a binary one (plan.vector_value) as "~" and its base64, which no JSON
    text starts with."""
    return value if isinstance(value, str) else _BINARY + base64.b64encode(value).decode("ascii")


def _read(value: str | None) -> str | bytes | None:
    """A value as the text column holds it, back as it was written."""
    if value is None or not value.startswith(_BINARY):
        return value
    try:
        return base64.b64decode(value[1:], validate=True)
    except ValueError:  # damaged: a miss, asked again
        return None


def create_sql() -> str:
    """The SQL that makes the store's tables: what a database owner runs for a role that may not create them."""
    return ";\n".join(_CREATE) + ";"


def open_postgres(url: CacheURL) -> PostgresStore:
    """The store at url, opened once per process and checked now: CacheError before any request is sent."""
    with _open_lock:
        store = _open.get(url.url)
        if store is None:
            store = _open[url.url] = PostgresStore(url)
        return store


class PostgresStore(BaseStore):
    """Cached answers in a PostgreSQL table shared by every process, machine and Ray actor that names it."""

    def __init__(self, url: CacheURL):
        import psycopg
        import psycopg_pool

        self._url = url
        self.location = url.shown
        self.state_dir = resolve_directory(None)  # batch job state is per user: the local cache directory
        self._errors = (psycopg.Error, psycopg_pool.PoolTimeout)
        self._down_until = 0.0  # after a lost connection, fail at once until then
        settings = {"autocommit": True, "application_name": constants.CACHE_APP_NAME}
        connect = {**settings, "connect_timeout": constants.PG_CONNECT_TIMEOUT_SECONDS}
        try:
            with psycopg.connect(url.url, **connect) as conn:  # libpq's own error, not a pool timeout, if it fails
                self._prepare(conn)
        except psycopg.Error as exc:
            raise CacheError(f"cannot use the shared cache {self.location}: {self._said(exc)}. Check the host, port, "
                             "database, user and password (PGPASSWORD or ~/.pgpass keep it out of the URL), or run "
                             "with cache=False") from None
        # Connections are checked when they come back (a broken one is replaced), not before each use.
        self._pool = psycopg_pool.ConnectionPool(url.url, kwargs=connect, min_size=1, max_size=constants.PG_POOL_SIZE,
                                                 timeout=constants.PG_POOL_TIMEOUT_SECONDS, name="llmframe",
                                                 open=False)
        self._pool.open()

    def _said(self, exc: BaseException) -> str:
        """A driver error in one line, without the password."""
        text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
        return scrub(text, self._url.url)

    def _prepare(self, conn) -> None:
        """Make the tables where they are missing (if the role may), then check the format and the role's rights."""
        import psycopg

        missing = "SELECT to_regclass(%s) IS NULL OR to_regclass(%s) IS NULL"
        if conn.execute(missing, (_T, _META)).fetchone()[0]:
            try:
                with conn.transaction():
                    # Processes starting at once on a new database: one creates, the others wait and see it made.
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_T,))
                    for statement in _CREATE:
                        conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                user = conn.info.user
                raise CacheError(
                    f"the shared cache {self.location} has no {_T} table and role {user!r} may not create it: ask "
                    f"the database's owner to create it (the SQL is in the README's \"A shared cache\" section, and "
                    f"`python -c 'from llmframe.stores.postgresql import create_sql; print(create_sql())'` prints it) "
                    f"and to grant {', '.join(_RIGHTS)} on it to {user!r}") from None
        row = conn.execute(f"SELECT value FROM {_META} WHERE name = 'format'").fetchone()
        found = int(row[0]) if row is not None and str(row[0]).isdigit() else None
        if found is None or found > constants.CACHE_RECORD_FORMAT:
            raise CacheError(
                f"the shared cache {self.location} holds records of format {row[0] if row else 'unknown'}, newer than "
                f"this llmframe reads (format {constants.CACHE_RECORD_FORMAT}): upgrade llmframe (pip install -U "
                "llmframe), or point cache= at another store")
        if found < constants.CACHE_RECORD_FORMAT:  # an older llmframe would misread the new values: it now refuses
            with contextlib.suppress(psycopg.Error):  # a role without UPDATE on the format table: left as it is
                conn.execute(f"UPDATE {_META} SET value = %s WHERE name = 'format'",
                             (str(constants.CACHE_RECORD_FORMAT),))
        lacking = [right for right in _RIGHTS
                   if not conn.execute("SELECT has_table_privilege(%s, %s)", (_T, right)).fetchone()[0]]
        if lacking:
            raise CacheError(f"role {conn.info.user!r} may not {', '.join(lacking)} on {_T} in the shared cache "
                             f"{self.location}: ask the database's owner to GRANT {', '.join(_RIGHTS)} ON {_T}")

    @contextlib.contextmanager
    def _connection(self):
        """A pooled connection; a lost server is StoreUnavailable (at once, for a few seconds after a failure)."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(f"the shared cache {self.location} is unreachable (it failed moments ago)")
        # After an outage a call probes briefly: a run must not stall on a server that is still gone.
        timeout = constants.PG_PROBE_TIMEOUT_SECONDS if self._down_until else None
        try:
            with self._pool.connection(timeout=timeout) as conn:
                yield conn
            self._down_until = 0.0
        except self._errors as exc:
            import psycopg

            if isinstance(exc, psycopg.OperationalError):  # the connection or server is gone, not a bad query
                self._down_until = time.monotonic() + constants.PG_RETRY_SECONDS
                raise StoreUnavailable(f"the shared cache {self.location} stopped answering: {self._said(exc)}") from None
            raise CacheError(f"the shared cache {self.location} refused a query: {self._said(exc)}") from None

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Values for keys (None where absent): one query for the whole chunk."""
        if not len(keys):
            return []
        keys = list(keys)
        with self._connection() as conn:  # in binary: three times faster than quoting each key as text
            found = dict(conn.execute(_GET, (keys,)).fetchall())
        return [_read(found.get(key)) for key in keys]

    def set_many(self, items: Sequence[tuple[str, str]], *, overwrite: bool = False) -> int:
        """Store answers in one statement; without overwrite a key already there is kept and counted."""
        if not items:
            return 0
        keys = [key for key, _value in items]
        meta = [decode(value) or (None, None) for _key, value in items]
        values = [_written(value) for _key, value in items]
        columns = (keys, values, [m[0] for m in meta], [m[1] for m in meta])
        with self._connection() as conn:
            if overwrite:  # delete, then insert: UPDATE is a right the store's role does not need
                with conn.transaction():
                    conn.execute(_DROP, (keys,))
                    conn.execute(_PUT, columns)
                return 0
            inserted = conn.execute(_PUT, columns).rowcount
        return len(items) - inserted

    def entries(self) -> Iterator[tuple[str, str]]:
        """Every (key, value) in key order, a page at a time: a copy that stops can start again anywhere."""
        after = ""
        while True:
            with self._connection() as conn:
                page = conn.execute(_PAGE, (after, constants.PG_COPY_ROWS)).fetchall()
            yield from ((key, _read(value)) for key, value in page)
            if len(page) < constants.PG_COPY_ROWS:
                return
            after = page[-1][0]

    def stats(self) -> dict:
        """Entries, bytes on the server, and per model the count and oldest/newest answer, counted by the server."""
        with self._connection() as conn:
            rows = conn.execute(f"SELECT model, count(*), min(created), max(created) FROM {_T} GROUP BY model"
                                ).fetchall()
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (_T,)).fetchone()[0]
        models = {m: {"entries": n, "oldest": lo, "newest": hi} for m, n, lo, hi in rows if m is not None}
        unknown = sum(n for m, n, _lo, _hi in rows if m is None)
        times = [m["oldest"] for m in models.values()] + [m["newest"] for m in models.values()]
        return {"store": self.location, "entries": sum(n for _m, n, _lo, _hi in rows), "size_bytes": int(size or 0),
                "size_limit_bytes": None, "oldest": min(times, default=None), "newest": max(times, default=None),
                "models": dict(sorted(models.items())), "unknown": unknown}

    def prune(self, *, older_than: float | None = None, model: str | None = None) -> int:
        """Delete the answers older than older_than seconds and/or of model (both must hold); neither: all.

        With a filter, values llmframe cannot read stay (their model and age are unknown).
        """
        check_model(model)
        where, args = [], []
        if model is not None:
            where.append("model = %s")
            args.append(model)
        if older_than is not None:
            where.append("created < %s")
            args.append(time.time() - parse_duration(older_than))
        with self._connection() as conn:
            return conn.execute(f"DELETE FROM {_T}" + (" WHERE " + " AND ".join(where) if where else ""), args).rowcount

    def __len__(self) -> int:
        with self._connection() as conn:
            return int(conn.execute(f"SELECT count(*) FROM {_T}").fetchone()[0])

    def close(self) -> None:
        """Close the pool's connections; the store is opened again by the next run that names it."""
        with _open_lock:
            if _open.get(self._url.url) is self:
                del _open[self._url.url]
        self._pool.close()

