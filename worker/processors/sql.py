"""A tiny SQL dialect helper, so one processor's SQL runs on sqlite3 and on psycopg.

Write queries with `?` placeholders (sqlite3's qmark style); on PostgreSQL they become `%s`
(and a literal `%` becomes `%%`). Keep `?` out of string literals. Both engines accept
`CREATE TABLE IF NOT EXISTS`, `INSERT ... ON CONFLICT (...) DO NOTHING / DO UPDATE SET
col = excluded.col ... WHERE ...`, TEXT and BIGINT, which is all the built-ins use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from worker.errors import FatalProcessingError

Dialect = Literal["sqlite", "postgresql"]

_PG_CACHE: dict[str, str] = {}


def dialect_of(conn: Any) -> Dialect:
    """Which engine a DB-API connection talks to (without importing psycopg)."""
    if isinstance(conn, sqlite3.Connection):
        return "sqlite"
    # The PostgreSQL ledger's connection is a subclass of psycopg's (worker.ledger.postgres).
    if any(cls.__module__.split(".")[0] == "psycopg" for cls in type(conn).__mro__):
        return "postgresql"
    raise TypeError(f"unsupported DB-API connection {type(conn).__module__}."
                    f"{type(conn).__name__}: expected sqlite3 or psycopg")


def to_pg(query: str) -> str:
    """`?` -> `%s` (cached: the built-ins reuse a handful of query strings)."""
    out = _PG_CACHE.get(query)
    if out is None:
        out = _PG_CACHE[query] = query.replace("%", "%%").replace("?", "%s")
    return out


class Sql:
    """Wraps a DB-API connection; `execute` takes `?`-style SQL on both engines.

    It never commits or rolls back: the ledger owns the transaction.
    """

    __slots__ = ("conn", "dialect")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.dialect: Dialect = dialect_of(conn)

    def execute(self, query: str, params: Sequence[Any] = ()) -> Any:
        if self.dialect == "postgresql":
            return self.conn.execute(to_pg(query), tuple(params))
        return self.conn.execute(query, tuple(params))

    def rowcount(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a write and return how many rows it changed."""
        return int(self.execute(query, params).rowcount)

    def fetchall(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(query, params).fetchall()]

    def fetchone(self, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.execute(query, params).fetchone()
        return None if row is None else tuple(row)

    def run_all(self, statements: Iterable[str]) -> None:
        """Run several statements (DDL) one by one: psycopg takes one per execute."""
        for statement in statements:
            self.execute(statement)


def transaction_sql(transaction: Any | None, processor: str) -> Sql:
    """The Sql wrapper for ctx.transaction; stops the worker if the ledger is not SQL."""
    if transaction is None:
        raise FatalProcessingError(
            f"processor {processor!r} writes read models and needs a SQL ledger; set "
            "WORKER_LEDGER to sqlite:///path or postgresql://..., or turn the built-in "
            "processors off with WORKER_BUILTIN_PROCESSORS=false.")
    return Sql(transaction)
