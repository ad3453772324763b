"""`sqlite:///relative/path.db` or `sqlite:////absolute/path.db` — the default, embedded ledger.

The file is in WAL mode with `synchronous=FULL`. A session is one `BEGIN IMMEDIATE` transaction:
the claim rows, the processors' writes through `session.transaction` (this `sqlite3.Connection`)
and the done marks commit together or not at all. Committed rows are always done marks, so a
claim on SQLite never answers BUSY.

Rows are appended in claim order; a claim finds them by the key's hash through two index
tables: a small *hot* one that takes the new entries, and a *cold* one into which a batch's
`commit()` merges the hot one every 20,000 entries (or an eighth of the rows, if more), in a
short transaction of its own (docs/ledger.md, "How the SQLite file stores done marks").

Several worker processes may share one file: `BEGIN IMMEDIATE` takes the database's write lock,
so their batches run one after another (a waiting process blocks up to `busy_timeout` seconds,
then gets LedgerUnavailable and the pipeline retries). This is safe but serial; the file must be
on a local disk (WAL does not work over network filesystems).

URL options: `?busy_timeout=30` (seconds), `?table=activity_worker_ledger`,
`?synchronous=full` (the default: a batch is on disk before its Kafka offsets are committed) or
`?synchronous=normal` (WAL is not fsynced per commit: several times faster, and still safe
against a killed worker, but a power loss or OS crash may drop the last batches' effects
together with their done marks while Kafka already committed past them).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Any

from worker.errors import ConfigError, LedgerUnavailable
from worker.ledger._common import (
    DONE,
    NEW,
    LazySavepoint,
    check_identifier,
    split_options,
)
from worker.ledger.base import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_PRUNE_INTERVAL_SECONDS,
    DEFAULT_RETENTION_SECONDS,
    ClaimState,
)
from worker.ledger.sql_ledger import SqlLedger, SqlSession
from worker.ledger.sqlite_connection import LedgerConnection, key_hashes, path_from_url
from worker.ledger.sqlite_schema import HOT_MIN, count_index, setup

_CHUNK = 500  # keys per IN (...) query, below SQLite's bound-parameter limit


class SqliteLedger(SqlLedger["SqliteSession", LedgerConnection]):
    kind = "SQLite"
    driver_error = sqlite3.Error

    def __init__(self, url: str, *, retention_seconds: float = DEFAULT_RETENTION_SECONDS,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 prune_interval_seconds: float = DEFAULT_PRUNE_INTERVAL_SECONDS,
                 prune_chunk: int = 1000, clock: Callable[[], float] = time.time) -> None:
        super().__init__(url, retention_seconds=retention_seconds, lease_seconds=lease_seconds,
                         prune_interval_seconds=prune_interval_seconds,
                         prune_chunk=prune_chunk, clock=clock)
        _, opts = split_options(url, ("busy_timeout", "table", "synchronous"))
        self.synchronous = opts.get("synchronous", "full").upper()
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"SQLite ledger: synchronous={opts['synchronous']!r} is not "
                              "supported; use ?synchronous=full (default) or ?synchronous=normal.")
        self.path = path_from_url(url)
        try:
            self.busy_timeout = float(opts.get("busy_timeout", "30"))
        except ValueError:
            raise ConfigError(f"SQLite ledger: busy_timeout={opts['busy_timeout']!r} is not a "
                              "number of seconds; use e.g. ?busy_timeout=30.") from None
        self.table = check_identifier(opts.get("table", "activity_worker_ledger"), "table")
        self._hot_inserts = 0             # entries in the hot index table (this process's view)
        self._hot_limit = HOT_MIN        # merge into the cold one past this many
        self._purged_below = 0            # cold entries of ids below this were purged
        self._lookups: dict[int, str] = {}  # lookup statement per number of keys

    # -- connection ---------------------------------------------------------------------------
    def _unavailable(self, exc: BaseException, doing: str) -> LedgerUnavailable:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return LedgerUnavailable(
                f"SQLite ledger {self.path} stayed locked by another process for more than "
                f"{self.busy_timeout:g} s while {doing}: check for a stuck worker sharing the "
                "file or raise ?busy_timeout=")
        return LedgerUnavailable(
            f"SQLite ledger {self.path} failed while {doing} ({type(exc).__name__}: {text}): "
            "check that the file's directory exists, is writable and is on a local disk.")

    def _connect(self) -> LedgerConnection:
        if self._conn is not None:
            return self._conn
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise LedgerUnavailable(f"SQLite ledger directory {directory} does not exist: "
                                    "create it or point the ledger URL elsewhere.")
        # Switching a new file to WAL answers "locked" at once (without waiting busy_timeout)
        # while another process does the same, so retry that part until the deadline.
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                       isolation_level=None, check_same_thread=False,
                                       factory=LedgerConnection)
            except sqlite3.Error as exc:
                raise self._unavailable(exc, "opening the file") from exc
            try:
                self._hot_inserts, self._hot_limit = setup(conn, self.path, self.table,
                                                           self.synchronous)
                break
            except sqlite3.OperationalError as exc:
                conn.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise self._unavailable(exc, "opening the file") from exc
            except (sqlite3.Error, ConfigError) as exc:
                conn.close()
                if isinstance(exc, ConfigError):
                    raise
                raise self._unavailable(exc, "opening the file") from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self._conn = conn
        return conn

    def _merge(self) -> None:
        """Move the hot index table's entries into the cold one, in a short transaction of its
        own after a batch committed; skipped (tried again after the next batch) when another
        process holds the write lock, unless the hot table grew past twice its limit (busy
        processes on one file would starve it): then it waits for the lock like a batch.
        Entries of pruned rows are dropped on the way."""
        conn = self._conn
        if conn is None:
            return
        table = self.table
        try:
            if self._hot_inserts < 2 * self._hot_limit:
                conn.execute("PRAGMA busy_timeout=0")
            conn.execute("BEGIN IMMEDIATE")
            first = conn.execute(f"SELECT min(id) FROM {table}").fetchone()[0]
            first = (1 << 62) if first is None else first  # an empty table: all entries stale
            conn.execute(f"INSERT OR IGNORE INTO {table}_cold (kh, id) SELECT kh, id "
                         f"FROM {table}_hot WHERE id >= ?", (first,))
            conn.execute(f"DELETE FROM {table}_hot")
            if first > self._purged_below:
                conn.execute(f"DELETE FROM {table}_cold WHERE id < ?", (first,))
            conn.execute("COMMIT")
            self._purged_below = first
            self._hot_inserts, self._hot_limit = count_index(conn, table)
        except sqlite3.Error:
            with suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        finally:
            with suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")

    def _lookup(self, n: int) -> str:
        """The claim's lookup of `n` hashes in both index tables (each hash bound once)."""
        sql = self._lookups.get(n)
        if sql is None:
            table = self.table
            marks = ",".join(f"?{i}" for i in range(1, n + 1))
            sql = self._lookups[n] = " UNION ALL ".join(
                f"SELECT t.key FROM {table}_{part} AS x JOIN {table} AS t ON t.id = x.id "
                f"WHERE x.kh IN ({marks})" for part in ("hot", "cold"))
        return sql

    def _new_session(self) -> SqliteSession:
        return SqliteSession(self)

    # -- Ledger -------------------------------------------------------------------------------
    def ping(self) -> None:
        try:
            self._connect().execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc, "pinging") from exc

    def prune(self) -> int:
        """Delete done marks older than the retention age, in short transactions of
        `prune_chunk` rows, at most once per `prune_interval_seconds`. Skipped while a session
        is open or when another process holds the write lock (it never waits for it)."""
        cutoff = self._prune_cutoff()
        if cutoff is None:
            return 0
        conn = self._connect()
        try:
            conn.execute("PRAGMA busy_timeout=0")
            return self._prune_in_chunks(lambda: self._prune_oldest(conn, cutoff))
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._unavailable(exc, "pruning") from exc
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")

    def _prune_oldest(self, conn: LedgerConnection, cutoff: int) -> int | None:
        """One chunk of prune(), a transaction of its own; None when another process holds
        the write lock (try again next time)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            raise
        # The oldest rows come first; stop at the first one still within retention
        # (claims of several processes may interleave a little out of time order).
        rows = conn.execute(f"SELECT id, created_ms FROM {self.table} ORDER BY id "
                            "LIMIT ?", (self.prune_chunk,)).fetchall()
        last = None
        for row_id, created_ms in rows:
            if created_ms >= cutoff:
                break
            last = row_id
        n: int = 0 if last is None else conn.execute(
            f"DELETE FROM {self.table} WHERE id <= ?", (last,)).rowcount
        if n and not conn.execute(f"SELECT 1 FROM {self.table} LIMIT 1").fetchone():
            # Emptied: ids start again at 1, so drop every index entry now (a merge
            # only drops entries below the first id left).
            conn.execute(f"DELETE FROM {self.table}_hot")
            conn.execute(f"DELETE FROM {self.table}_cold")
        conn.execute("COMMIT")
        return n


class SqliteSession(SqlSession):
    def __init__(self, ledger: SqliteLedger) -> None:
        super().__init__()
        self._ledger = ledger
        self._began = False

    def _begin(self) -> LedgerConnection:
        self._check_open()
        conn = self._ledger._connect()
        if not self._began:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._ledger._unavailable(exc, "starting a batch transaction") from exc
            self._began = True
            conn._aw_in_batch = True
        return conn

    @property
    def transaction(self) -> Any | None:
        return self._begin()

    def savepoint(self) -> AbstractContextManager[None]:
        savepoint = self._savepoint
        if savepoint is None or self._finished:
            savepoint = self._savepoint = LazySavepoint(self._begin(), self._ledger._unavailable,
                                                        lambda: False)
        return savepoint

    def _store_claim(self, keys: list[str]) -> list[ClaimState]:
        conn = self._begin()
        ledger = self._ledger
        table = ledger.table
        now_ms = int(ledger._clock() * 1000)
        hashes = key_hashes(keys)
        try:
            existing: set[str] = set()
            for i in range(0, len(hashes), _CHUNK):
                chunk = hashes[i:i + _CHUNK]
                existing.update(r[0] for r in conn.execute(ledger._lookup(len(chunk)), chunk))
            rows = [(h, k, now_ms) for h, k in zip(hashes, keys, strict=True)
                    if k not in existing]
            if rows:
                last = conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0
                conn.executemany(f"INSERT INTO {table} (kh, key, created_ms) VALUES (?, ?, ?)",
                                 rows)
                conn.execute(f"INSERT INTO {table}_hot (kh, id) SELECT kh, id FROM {table} "
                             "WHERE id > ?", (last,))
                ledger._hot_inserts += len(rows)
        except sqlite3.Error as exc:
            raise ledger._unavailable(exc, "claiming keys") from exc
        return [DONE if k in existing else NEW for k in keys]

    def _delete(self, keys: list[str]) -> None:
        conn = self._begin()
        table = self._ledger.table
        hashes = key_hashes(keys)
        try:
            # A session's own claims are in the hot index table (merges run between batches);
            # the cold one is searched too, so that a release can never leave a done mark.
            conn.executemany(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}_hot "
                             f"WHERE kh = ?1 UNION ALL SELECT id FROM {table}_cold "
                             "WHERE kh = ?1) AND key = ?2", zip(hashes, keys, strict=True))
            for index in (f"{table}_hot", f"{table}_cold"):
                conn.executemany(f"DELETE FROM {index} WHERE kh = ? AND NOT EXISTS "
                                 f"(SELECT 1 FROM {table} WHERE {table}.id = {index}.id)",
                                 [(h,) for h in hashes])
        except sqlite3.Error as exc:
            raise self._ledger._unavailable(exc, "releasing keys") from exc

    def _store_release(self, keys: list[str]) -> None:
        self._delete(keys)

    def _store_commit(self, leftover: list[str]) -> None:
        if not self._began:
            return
        if leftover:
            self._delete(leftover)
        ledger = self._ledger
        conn = ledger._connect()
        conn._aw_reset()
        conn._aw_in_batch = False
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ledger._unavailable(exc, "committing a batch") from exc
        if ledger._hot_inserts >= ledger._hot_limit:
            ledger._merge()

    def _store_rollback(self, claimed: list[str]) -> None:
        if not self._began:
            return
        conn = self._ledger._conn
        if conn is None:
            return
        conn._aw_reset()
        conn._aw_in_batch = False
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._ledger._drop_connection()  # the transaction dies with the connection
