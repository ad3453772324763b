"""The SQLite ledger's tables: rows appended in claim order, and hot and cold index tables of
`(kh, id)` (docs/ledger.md, "How the SQLite file stores done marks"); created on first use, and
files of the two earlier schemas migrated in place, keeping every done mark."""

from __future__ import annotations

import sqlite3

from worker.errors import ConfigError
from worker.ledger.sqlite_connection import key_hash

_CACHE_KIB = 65536          # page cache per connection (64 MiB at most)
_CHECKPOINT_PAGES = 20000   # WAL size (pages) that triggers an automatic checkpoint
HOT_MIN = 20_000            # hot index entries that trigger a merge into the cold index,
HOT_RATIO = 8               # or the table's rows / HOT_RATIO if that is more
_COLUMNS = ["id", "kh", "key", "created_ms"]  # rows; (kh, id) in the hot and cold index tables
_V2_COLUMNS = ["id", "h", "key", "created_ms"]  # the second schema: one index on h
_V1_COLUMNS = ["key", "created_ms"]  # the first schema: (key TEXT PRIMARY KEY) WITHOUT ROWID


def setup(conn: sqlite3.Connection, path: str, table: str, synchronous: str
          ) -> tuple[int, int]:
    """Make the connection a ledger's (WAL, pragmas) and the table current (create or migrate);
    returns count_index()."""
    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigError(f"SQLite ledger {path} cannot use WAL mode (got {mode!r}): "
                              "put the file on a local filesystem.")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    # Each batch inserts into random pages of the hash index. A bigger page cache keeps the
    # index in memory, and a checkpoint every 20000 WAL pages (~80 MB, instead of 1000)
    # copies each index page back once for many batches: ~3x faster at a million rows.
    conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
    # A worker of the first schema opening a migrated file adds back its created_ms index.
    names = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE name IN (?, ?, ?)",
        (f"{table}_hot", f"{table}_cold", f"{table}_created"))}
    if columns(conn, table) == _COLUMNS and names == {f"{table}_hot", f"{table}_cold"}:
        return count_index(conn, table)  # the current schema: nothing to create, no lock
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = columns(conn, table)
        conn.execute(f"DROP INDEX IF EXISTS {table}_created")
        if not found:
            create(conn, table)
        elif found == _V1_COLUMNS:
            migrate_v1(conn, table)
        elif found == _V2_COLUMNS:
            conn.execute(f"DROP INDEX IF EXISTS {table}_h")
            conn.execute(f"ALTER TABLE {table} RENAME COLUMN h TO kh")
            build_index(conn, table)
        elif found == _COLUMNS:
            build_index(conn, table)  # an index table is missing: rebuild both
        else:
            raise ConfigError(
                f"SQLite ledger {path}: table {table} has columns {found}, not a "
                "ledger's: point ?table= at another table name or the URL at another file.")
        counted = count_index(conn, table)
        conn.execute("COMMIT")
        return counted
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]

def create(conn: sqlite3.Connection, table: str) -> None:
    # Rows are appended in claim order (id), so a batch's inserts touch the table's last
    # pages only and pruning walks it from the start. Rows are found by kh = key_hash(key)
    # through the hot and cold index tables (see docs/ledger.md), not an index on the table.
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, kh INTEGER NOT NULL, "
                 "key TEXT NOT NULL, created_ms INTEGER NOT NULL)")
    build_index(conn, table)

def build_index(conn: sqlite3.Connection, table: str) -> None:
    """(Re)create the hot and cold index tables, every row's (kh, id) in the cold one."""
    for part in ("hot", "cold"):
        conn.execute(f"DROP TABLE IF EXISTS {table}_{part}")
        # (kh, id) is unique even when two keys share a hash (about one pair in 10^19).
        conn.execute(f"CREATE TABLE {table}_{part} (kh INTEGER NOT NULL, "
                     "id INTEGER NOT NULL, PRIMARY KEY (kh, id)) WITHOUT ROWID")
    conn.execute(f"INSERT INTO {table}_cold (kh, id) SELECT kh, id FROM {table} "
                 "ORDER BY kh, id")

def count_index(conn: sqlite3.Connection, table: str) -> tuple[int, int]:
    """(entries in the hot index table, the size that triggers the next merge)."""
    first, last = conn.execute(f"SELECT (SELECT min(id) FROM {table}), "
                               f"(SELECT max(id) FROM {table})").fetchone()
    rows = 0 if first is None else last - first + 1  # at most: ids of pruned rows skipped
    hot = conn.execute(f"SELECT count(*) FROM {table}_hot").fetchone()[0]
    return int(hot), max(HOT_MIN, rows // HOT_RATIO)

def migrate_v1(conn: sqlite3.Connection, table: str) -> None:
    """Rewrite a ledger file of the first schema, `(key TEXT PRIMARY KEY, created_ms)`,
    into the current one, keeping every done mark (inside the caller's transaction)."""
    conn.create_function("aw_key_hash", 1, key_hash, deterministic=True)
    conn.execute(f"DROP INDEX IF EXISTS {table}_created")
    conn.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, kh INTEGER NOT NULL, "
                 "key TEXT NOT NULL, created_ms INTEGER NOT NULL)")
    conn.execute(f"INSERT INTO {table} (kh, key, created_ms) SELECT aw_key_hash(key), key, "
                 f"created_ms FROM {table}_v1 ORDER BY created_ms")
    conn.execute(f"DROP TABLE {table}_v1")
    build_index(conn, table)
