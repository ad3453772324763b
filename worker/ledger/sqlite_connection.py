"""The SQLite ledger's connection: lazy savepoints and no way for a processor to end the
batch's transaction (commit, rollback, executescript), the file path from the URL, and the key
hash rows are found by."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any, Self

from worker.errors import ConfigError
from worker.ledger._common import LazySavepoints, split_options


def key_hashes(keys: list[str]) -> list[int]:
    """The `kh` of each key: the first 8 bytes of its BLAKE2b digest as a signed 64-bit int.

    Rows are found through index tables of `(kh, id)` rather than an index on the long random
    TEXT key (see docs/ledger.md); the full key is kept in the row to tell a collision apart."""
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return [from_bytes(blake2b(k.encode(), digest_size=8).digest(), "big", signed=True)
            for k in keys]


def key_hash(key: str) -> int:
    return key_hashes([key])[0]


def path_from_url(url: str) -> str:
    parts, _ = split_options(url, ("busy_timeout", "table", "synchronous"))
    if parts.netloc or not parts.path or parts.path == "/":
        raise ConfigError(f"SQLite ledger URL {url!r} has no file path: use "
                          "sqlite:///relative/path.db or sqlite:////absolute/path.db.")
    return parts.path[1:]


class LedgerConnection(LazySavepoints, sqlite3.Connection):
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
        return super().cursor(factory or FlushingCursor)


class FlushingCursor(sqlite3.Cursor):
    """A cursor of the ledger's connection: creates the pending savepoint before running."""

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        conn = self.connection
        if isinstance(conn, LedgerConnection):
            conn._aw_flush()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Self:
        conn = self.connection
        if isinstance(conn, LedgerConnection):
            conn._aw_flush()
        return super().executemany(sql, parameters)

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        raise RuntimeError("executescript() would commit the ledger's open transaction first: "
                           "run the statements one by one with execute()")
