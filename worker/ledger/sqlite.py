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

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Any, Self

from worker.errors import ConfigError, LedgerUnavailable
from worker.ledger._common import (
    DONE,
    NEW,
    PRUNE_CHUNKS_PER_CALL,
    LazySavepoint,
    LazySavepoints,
    SessionBase,
    check_identifier,
    split_options,
)
from worker.ledger.base import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_PRUNE_INTERVAL_SECONDS,
    DEFAULT_RETENTION_SECONDS,
    ClaimState,
)

_CHUNK = 500  # keys per IN (...) query, below SQLite's bound-parameter limit
_CACHE_KIB = 65536          # page cache per connection (64 MiB at most)
_CHECKPOINT_PAGES = 20000   # WAL size (pages) that triggers an automatic checkpoint
_HOT_MIN = 20_000           # hot index entries that trigger a merge into the cold index,
_HOT_RATIO = 8              # or the table's rows / _HOT_RATIO if that is more
_COLUMNS = ["id", "kh", "key", "created_ms"]  # rows; (kh, id) in the hot and cold index tables
_V2_COLUMNS = ["id", "h", "key", "created_ms"]  # the second schema: one index on h
_V1_COLUMNS = ["key", "created_ms"]  # the first schema: (key TEXT PRIMARY KEY) WITHOUT ROWID


def key_hashes(keys: list[str]) -> list[int]:
    """The `kh` of each key: the first 8 bytes of its BLAKE2b digest as a signed 64-bit int.

    Rows are found through index tables of `(kh, id)` rather than an index on the long random
    TEXT key (see docs/ledger.md); the full key is kept in the row to tell a collision apart."""
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return [from_bytes(blake2b(k.encode(), digest_size=8).digest(), "big", signed=True)
            for k in keys]


def key_hash(key: str) -> int:
    return key_hashes([key])[0]


def _path_from_url(url: str) -> str:
    parts, _ = split_options(url, ("busy_timeout", "table", "synchronous"))
    if parts.netloc or not parts.path or parts.path == "/":
        raise ConfigError(f"SQLite ledger URL {url!r} has no file path: use "
                          "sqlite:///relative/path.db or sqlite:////absolute/path.db.")
    return parts.path[1:]


class _LedgerConnection(sqlite3.Connection, LazySavepoints):
    """A `sqlite3.Connection` with lazy savepoints (see LazySavepoints) that refuses what would
    end the batch's transaction from inside a processor."""

    def _aw_exec(self, statements: list[str]) -> None:
        for statement in statements:
            sqlite3.Connection.execute(self, statement)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self._aw_flush()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        self._aw_flush()
        return super().executemany(sql, parameters)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        raise RuntimeError("executescript() would commit the ledger's open transaction first: "
                           "run the statements one by one with execute()")

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _FlushingCursor)

    def commit(self) -> None:
        self._aw_refuse("commit")
        super().commit()

    def rollback(self) -> None:
        self._aw_refuse("roll back")
        super().rollback()


class _FlushingCursor(sqlite3.Cursor):
    """A cursor of the ledger's connection: creates the pending savepoint before running."""

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        conn = self.connection
        if isinstance(conn, _LedgerConnection):
            conn._aw_flush()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Self:
        conn = self.connection
        if isinstance(conn, _LedgerConnection):
            conn._aw_flush()
        return super().executemany(sql, parameters)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        raise RuntimeError("executescript() would commit the ledger's open transaction first: "
                           "run the statements one by one with execute()")


class SqliteLedger:
    def __init__(self, url: str, *, retention_seconds: float = DEFAULT_RETENTION_SECONDS,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 prune_interval_seconds: float = DEFAULT_PRUNE_INTERVAL_SECONDS,
                 prune_chunk: int = 1000, clock: Callable[[], float] = time.time) -> None:
        _, opts = split_options(url, ("busy_timeout", "table", "synchronous"))
        self.url = url
        self.synchronous = opts.get("synchronous", "full").upper()
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"SQLite ledger: synchronous={opts['synchronous']!r} is not "
                              "supported; use ?synchronous=full (default) or ?synchronous=normal.")
        self.path = _path_from_url(url)
        try:
            self.busy_timeout = float(opts.get("busy_timeout", "30"))
        except ValueError:
            raise ConfigError(f"SQLite ledger: busy_timeout={opts['busy_timeout']!r} is not a "
                              "number of seconds; use e.g. ?busy_timeout=30.") from None
        self.table = check_identifier(opts.get("table", "activity_worker_ledger"), "table")
        self.retention_seconds = float(retention_seconds)
        self.lease_seconds = float(lease_seconds)  # unused: SQL claims are transaction locks
        self.prune_interval_seconds = float(prune_interval_seconds)
        self.prune_chunk = int(prune_chunk)
        self._clock = clock
        self._last_prune = float("-inf")
        self._active: SqliteSession | None = None
        self._conn: _LedgerConnection | None = None
        self._hot_inserts = 0             # entries in the hot index table (this process's view)
        self._hot_limit = _HOT_MIN        # merge into the cold one past this many
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

    def _connect(self) -> _LedgerConnection:
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
                                       factory=_LedgerConnection)
            except sqlite3.Error as exc:
                raise self._unavailable(exc, "opening the file") from exc
            try:
                self._setup(conn)
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

    def _setup(self, conn: sqlite3.Connection) -> None:
        if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(f"SQLite ledger {self.path} cannot use WAL mode (got {mode!r}): "
                                  "put the file on a local filesystem.")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # Each batch inserts into random pages of the hash index. A bigger page cache keeps the
        # index in memory, and a checkpoint every 20000 WAL pages (~80 MB, instead of 1000)
        # copies each index page back once for many batches: ~3x faster at a million rows.
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
        table = self.table
        # A worker of the first schema opening a migrated file adds back its created_ms index.
        names = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE name IN (?, ?, ?)",
            (f"{table}_hot", f"{table}_cold", f"{table}_created"))}
        if self._columns(conn) == _COLUMNS and names == {f"{table}_hot", f"{table}_cold"}:
            self._count_index(conn)
            return  # the current schema: nothing to create (no write lock taken)
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = self._columns(conn)
            conn.execute(f"DROP INDEX IF EXISTS {table}_created")
            if not columns:
                self._create(conn)
            elif columns == _V1_COLUMNS:
                self._migrate_v1(conn)
            elif columns == _V2_COLUMNS:
                conn.execute(f"DROP INDEX IF EXISTS {table}_h")
                conn.execute(f"ALTER TABLE {table} RENAME COLUMN h TO kh")
                self._build_index(conn)
            elif columns == _COLUMNS:
                self._build_index(conn)  # an index table is missing: rebuild both
            else:
                raise ConfigError(
                    f"SQLite ledger {self.path}: table {table} has columns {columns}, not a "
                    "ledger's: point ?table= at another table name or the URL at another file.")
            self._count_index(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _columns(self, conn: sqlite3.Connection) -> list[str]:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({self.table})")]

    def _create(self, conn: sqlite3.Connection) -> None:
        # Rows are appended in claim order (id), so a batch's inserts touch the table's last
        # pages only and pruning walks it from the start. Rows are found by kh = key_hash(key)
        # through the hot and cold index tables (see docs/ledger.md), not an index on the table.
        conn.execute(f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, kh INTEGER NOT NULL, "
                     "key TEXT NOT NULL, created_ms INTEGER NOT NULL)")
        self._build_index(conn)

    def _build_index(self, conn: sqlite3.Connection) -> None:
        """(Re)create the hot and cold index tables, every row's (kh, id) in the cold one."""
        table = self.table
        for part in ("hot", "cold"):
            conn.execute(f"DROP TABLE IF EXISTS {table}_{part}")
            # (kh, id) is unique even when two keys share a hash (about one pair in 10^19).
            conn.execute(f"CREATE TABLE {table}_{part} (kh INTEGER NOT NULL, "
                         "id INTEGER NOT NULL, PRIMARY KEY (kh, id)) WITHOUT ROWID")
        conn.execute(f"INSERT INTO {table}_cold (kh, id) SELECT kh, id FROM {table} "
                     "ORDER BY kh, id")

    def _count_index(self, conn: sqlite3.Connection) -> None:
        """Size the next merge from the index tables (once per connection)."""
        table = self.table
        first, last = conn.execute(f"SELECT (SELECT min(id) FROM {table}), "
                                   f"(SELECT max(id) FROM {table})").fetchone()
        rows = 0 if first is None else last - first + 1  # at most: ids of pruned rows skipped
        self._hot_inserts = conn.execute(f"SELECT count(*) FROM {table}_hot").fetchone()[0]
        self._hot_limit = max(_HOT_MIN, rows // _HOT_RATIO)

    def _migrate_v1(self, conn: sqlite3.Connection) -> None:
        """Rewrite a ledger file of the first schema, `(key TEXT PRIMARY KEY, created_ms)`,
        into the current one, keeping every done mark (inside the caller's transaction)."""
        table = self.table
        conn.create_function("aw_key_hash", 1, key_hash, deterministic=True)
        conn.execute(f"DROP INDEX IF EXISTS {table}_created")
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, kh INTEGER NOT NULL, "
                     "key TEXT NOT NULL, created_ms INTEGER NOT NULL)")
        conn.execute(f"INSERT INTO {table} (kh, key, created_ms) SELECT aw_key_hash(key), key, "
                     f"created_ms FROM {table}_v1 ORDER BY created_ms")
        conn.execute(f"DROP TABLE {table}_v1")
        self._build_index(conn)

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
            self._count_index(conn)
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

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    # -- Ledger -------------------------------------------------------------------------------
    def session(self) -> SqliteSession:
        if self._active is not None and not self._active._finished:
            raise RuntimeError("a SQLite ledger runs one session at a time: commit or roll back "
                               "the open session first")
        self._active = SqliteSession(self)
        return self._active

    def ping(self) -> None:
        try:
            self._connect().execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc, "pinging") from exc

    def prune(self) -> int:
        """Delete done marks older than the retention age, in short transactions of
        `prune_chunk` rows, at most once per `prune_interval_seconds`. Skipped while a session
        is open or when another process holds the write lock (it never waits for it)."""
        now = self._clock()
        if self._active is not None and not self._active._finished:
            return 0
        if now - self._last_prune < self.prune_interval_seconds:
            return 0
        self._last_prune = now
        cutoff = int((now - self.retention_seconds) * 1000)
        conn = self._connect()
        total = 0
        try:
            conn.execute("PRAGMA busy_timeout=0")
            for _ in range(PRUNE_CHUNKS_PER_CALL):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if "locked" in str(exc) or "busy" in str(exc):
                        break  # another process is busy: try again next time
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
                n = 0 if last is None else conn.execute(
                    f"DELETE FROM {self.table} WHERE id <= ?", (last,)).rowcount
                if n and not conn.execute(f"SELECT 1 FROM {self.table} LIMIT 1").fetchone():
                    # Emptied: ids start again at 1, so drop every index entry now (a merge
                    # only drops entries below the first id left).
                    conn.execute(f"DELETE FROM {self.table}_hot")
                    conn.execute(f"DELETE FROM {self.table}_cold")
                conn.execute("COMMIT")
                total += n
                if n < self.prune_chunk:
                    break
            else:
                self._last_prune = float("-inf")  # more is due: prune again on the next call
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._unavailable(exc, "pruning") from exc
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        return total

    def close(self) -> None:
        if self._active is not None and not self._active._finished:
            self._active.rollback()
        self._drop_connection()


class SqliteSession(SessionBase):
    def __init__(self, ledger: SqliteLedger) -> None:
        super().__init__()
        self._ledger = ledger
        self._began = False
        self._savepoint: LazySavepoint | None = None

    def _begin(self) -> _LedgerConnection:
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

    def _store_mark_done(self, keys: list[str]) -> None:
        # The claim row is the done mark once the transaction commits: nothing to write.
        return None

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
