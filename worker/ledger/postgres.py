"""`postgresql://user@host:port/db` — a shared, transactional ledger (psycopg 3).

A session is one transaction on the ledger's connection: the claim rows, the processors' writes
through `session.transaction` (this `psycopg.Connection`) and the done marks commit together or
not at all. Committed rows are always done marks.

Claims never block. Each key is first locked with `pg_try_advisory_xact_lock` (held until the
claiming transaction ends); a key locked by another transaction is BUSY, its effect may be in
flight. A locked key is then inserted with `ON CONFLICT DO NOTHING`: inserted means NEW, an
existing row means DONE. Because every claimer takes the advisory lock before touching a row,
the insert never waits on another transaction's uncommitted row. A crashed worker's transaction
is aborted by the server when its connection drops, which frees its keys: that is the lease.

URL options (removed before connecting; other query parameters go to libpq):
`?table=activity_worker_ledger`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import sql

from worker.errors import LedgerKeyRejected, LedgerUnavailable
from worker.ledger._common import (
    BUSY,
    DONE,
    NEW,
    LazySavepoint,
    LazySavepoints,
    check_identifier,
    redacted_url,
    split_options,
    stored_key,
)
from worker.ledger.base import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_PRUNE_INTERVAL_SECONDS,
    DEFAULT_RETENTION_SECONDS,
    ClaimState,
)
from worker.ledger.sql_ledger import SqlLedger, SqlSession

# SQLSTATE classes of a statement refused for its data, not for the store: 22 "data
# exception", 54 "program limit exceeded" (e.g. an index row too large).
_KEY_DATA_CLASSES = frozenset({"22", "54"})
_SCHEMA_LOCK = 0x61775F6C6564  # advisory lock id serialising CREATE TABLE across workers
_HASH_SEED = 0x6177  # hashtextextended seed for the per-key advisory locks


class _LazySavepointConnection(LazySavepoints, psycopg.Connection[Any]):
    """A plain `psycopg.Connection` with lazy savepoints and no commit/rollback for processors."""

    def _aw_exec(self, statements: list[str]) -> None:
        with psycopg.Cursor(self) as cur:  # a plain cursor: no flush, no recursion
            cur.execute("; ".join(statements).encode())  # one round trip

    @contextmanager
    def transaction(self, savepoint_name: str | None = None,
                    force_rollback: bool = False) -> Iterator[psycopg.Transaction]:
        self._aw_flush()  # psycopg's own savepoints must nest inside ours
        with super().transaction(savepoint_name, force_rollback) as tx:
            yield tx


class _FlushingCursor(psycopg.Cursor[Any]):
    """Creates the connection's pending savepoint before running anything."""

    def _aw_flush(self) -> None:
        conn = self.connection
        if isinstance(conn, _LazySavepointConnection):
            conn._aw_flush()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._aw_flush()
        return super().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> None:
        self._aw_flush()
        super().executemany(*args, **kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        self._aw_flush()
        return super().stream(*args, **kwargs)

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        self._aw_flush()
        return super().copy(*args, **kwargs)


class PostgresLedger(SqlLedger["PostgresSession", "_LazySavepointConnection"]):
    kind = "PostgreSQL"
    driver_error = psycopg.Error

    def __init__(self, url: str, *, retention_seconds: float = DEFAULT_RETENTION_SECONDS,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 prune_interval_seconds: float = DEFAULT_PRUNE_INTERVAL_SECONDS,
                 prune_chunk: int = 1000, connect_timeout: int = 5,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(url, retention_seconds=retention_seconds, lease_seconds=lease_seconds,
                         prune_interval_seconds=prune_interval_seconds,
                         prune_chunk=prune_chunk, clock=clock)
        parts, opts = split_options(url, ("table",))
        self._conninfo = parts.geturl()
        self._safe_url = redacted_url(url)
        self.table = check_identifier(opts.get("table", "activity_worker_ledger"), "table")
        self.connect_timeout = connect_timeout
        t = sql.Identifier(self.table)
        self._claim_sql = sql.SQL(
            "WITH k AS MATERIALIZED ("
            " SELECT key, pg_try_advisory_xact_lock(hashtextextended(key, {seed})) AS got"
            " FROM unnest(%(keys)s::text[]) AS u(key)),"
            " ins AS (INSERT INTO {t} (key, created_ms) SELECT key, %(now)s FROM k WHERE got"
            " ON CONFLICT (key) DO NOTHING RETURNING key)"
            " SELECT k.key, k.got, ins.key IS NOT NULL FROM k LEFT JOIN ins USING (key)"
        ).format(t=t, seed=sql.Literal(_HASH_SEED))
        self._delete_sql = sql.SQL("DELETE FROM {t} WHERE key = ANY(%(keys)s::text[])").format(t=t)
        self._prune_sql = sql.SQL(
            "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE created_ms < %(cutoff)s"
            " LIMIT %(n)s FOR UPDATE SKIP LOCKED)").format(t=t)

    # -- connection ---------------------------------------------------------------------------
    def _failed(self, exc: psycopg.Error, doing: str) -> LedgerUnavailable | LedgerKeyRejected:
        """A statement's failure: about a key's data (SQLSTATE class 22 or 54, with the
        connection still fine) or the store itself."""
        # (psycopg refuses some data itself, e.g. a NUL in text: a DataError with no SQLSTATE)
        state = getattr(exc, "sqlstate", None) or ("22" if isinstance(exc, psycopg.DataError)
                                                    else "")
        if state[:2] in _KEY_DATA_CLASSES and self._conn is not None and not self._conn.broken:
            first = (str(exc).strip().splitlines() or [""])[0]
            return LedgerKeyRejected(f"PostgreSQL refused a key while {doing} "
                                     f"(SQLSTATE {state}: {first})")
        return self._unavailable(exc, doing)

    def _unavailable(self, exc: BaseException, doing: str) -> LedgerUnavailable:
        first = (str(exc).strip().splitlines() or [""])[0]
        return LedgerUnavailable(
            f"PostgreSQL ledger at {self._safe_url} failed while {doing} "
            f"({type(exc).__name__}: {first}): check that the server is running and reachable "
            "and that the URL's user may create and write the ledger table.")

    def _connect(self) -> _LazySavepointConnection:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._conn = None
        try:
            conn = _LazySavepointConnection.connect(
                self._conninfo, autocommit=False, cursor_factory=_FlushingCursor,
                connect_timeout=self.connect_timeout, keepalives=1, keepalives_idle=10,
                keepalives_interval=5, keepalives_count=3)
            self._create_table(conn)
        except psycopg.Error as exc:
            raise self._unavailable(exc, "connecting") from exc
        self._conn = conn
        return conn

    def _create_table(self, conn: psycopg.Connection[Any]) -> None:
        # Look before creating: CREATE ... IF NOT EXISTS still takes table locks, which would
        # wait for every open batch transaction of the other workers.
        exists = "SELECT to_regclass(%s) IS NOT NULL"
        found = conn.execute(exists, (self.table,)).fetchone() == (True,)
        conn.rollback()  # so that the block below is a transaction of its own, not a savepoint
        if found:
            return
        t = sql.Identifier(self.table)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY,"
                                     " created_ms bigint NOT NULL)").format(t=t))
                conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (created_ms)")
                             .format(i=sql.Identifier(self.table + "_created"), t=t))
        except (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
            pass  # another worker created it in the meantime (name lookups may be stale)

    def _new_session(self) -> PostgresSession:
        return PostgresSession(self)

    # -- Ledger -------------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            conn = self._connect()
            conn.execute("SELECT 1").fetchone()
            if not self._session_open():
                conn.rollback()
        except psycopg.Error as exc:
            raise self._unavailable(exc, "pinging") from exc

    def prune(self) -> int:
        """Delete done marks older than the retention age in short transactions of
        `prune_chunk` rows (`FOR UPDATE SKIP LOCKED`: it never waits on a claimer), at most once
        per `prune_interval_seconds`, and never while a session is open."""
        cutoff = self._prune_cutoff()
        if cutoff is None:
            return 0
        try:
            conn = self._connect()

            def prune_oldest() -> int:
                n = conn.execute(self._prune_sql, {"cutoff": cutoff, "n": self.prune_chunk}
                                 ).rowcount
                conn.commit()
                return n

            return self._prune_in_chunks(prune_oldest)
        except psycopg.Error as exc:
            self._drop_connection()
            raise self._unavailable(exc, "pruning") from exc


class PostgresSession(SqlSession):
    def __init__(self, ledger: PostgresLedger) -> None:
        super().__init__()
        self._ledger = ledger
        self._conn: _LazySavepointConnection | None = None

    def _c(self) -> _LazySavepointConnection:
        """The session's connection, fixed at first use: if it breaks, the session is over."""
        self._check_open()
        if self._conn is None:
            self._conn = self._ledger._connect()
            self._conn._aw_in_batch = True
        elif self._conn.closed or self._conn.broken:
            raise LedgerUnavailable(f"PostgreSQL ledger at {self._ledger._safe_url} lost its "
                                    "connection during the batch: roll back and retry the batch.")
        return self._conn

    @property
    def transaction(self) -> Any | None:
        return self._c()

    def savepoint(self) -> AbstractContextManager[None]:
        conn = self._c()
        savepoint = self._savepoint
        if savepoint is None or savepoint._conn is not conn:
            savepoint = self._savepoint = LazySavepoint(
                conn, self._ledger._unavailable, lambda: conn.closed or conn.broken)
        return savepoint

    def _store_claim(self, keys: list[str]) -> list[ClaimState]:
        conn = self._c()
        now_ms = int(self._ledger._clock() * 1000)
        stored = [stored_key(k) for k in keys]
        try:
            with psycopg.Cursor(conn) as cur:  # the ledger's own statements never flush
                rows = cur.execute(self._ledger._claim_sql, {"keys": stored, "now": now_ms}
                                   ).fetchall()
        except psycopg.Error as exc:
            raise self._ledger._failed(exc, "claiming keys") from exc
        states = {key: (NEW if inserted else DONE) if got else BUSY
                  for key, got, inserted in rows}
        return [states[k] for k in stored]

    def _delete(self, keys: list[str], doing: str) -> None:
        try:
            with psycopg.Cursor(self._c()) as cur:
                cur.execute(self._ledger._delete_sql, {"keys": [stored_key(k) for k in keys]})
        except psycopg.Error as exc:
            raise self._ledger._failed(exc, doing) from exc

    def _store_release(self, keys: list[str]) -> None:
        self._delete(keys, "releasing keys")

    def _store_commit(self, leftover: list[str]) -> None:
        if self._conn is None:
            return
        if leftover:
            self._delete(leftover, "releasing unfinished keys")
        conn = self._c()
        conn._aw_reset()
        conn._aw_in_batch = False
        try:
            conn.commit()
        except psycopg.Error as exc:
            raise self._ledger._unavailable(exc, "committing a batch") from exc

    def _store_rollback(self, claimed: list[str]) -> None:
        conn = self._conn
        if conn is None:
            return
        conn._aw_reset()
        conn._aw_in_batch = False
        try:
            conn.rollback()
        except psycopg.Error:
            self._ledger._drop_connection()  # the server aborts the transaction with it
