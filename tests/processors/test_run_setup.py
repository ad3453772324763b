"""run_setup: the read-model tables are created once at startup in a committed ledger
transaction, and a non-SQL ledger is refused for processors that need one."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from worker.errors import ConfigError
from worker.events import Event
from worker.ledger.base import ClaimState
from worker.processors.api import Context, Processor
from worker.processors.discovery import load_processors, run_setup


class FakeSession:
    """Just enough of LedgerSession: a transaction that commits or rolls back."""

    def __init__(self, conn: Any | None) -> None:
        self._conn = conn
        self.committed = self.rolled_back = False

    @property
    def transaction(self) -> Any | None:
        return self._conn

    def claim(self, keys: Sequence[str]) -> list[ClaimState]:
        return [ClaimState.NEW for _ in keys]

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        yield

    def mark_done(self, keys: Sequence[str]) -> None: ...
    def release(self, keys: Sequence[str]) -> None: ...

    def commit(self) -> None:
        if self._conn is not None:
            self._conn.commit()
        self.committed = True

    def rollback(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
        self.rolled_back = True


class FakeLedger:
    def __init__(self, url: str, conn: Any | None) -> None:
        self.url = url
        self.conn = conn
        self.sessions: list[FakeSession] = []

    def session(self) -> FakeSession:
        self.sessions.append(FakeSession(self.conn))
        return self.sessions[-1]

    def ping(self) -> None: ...
    def prune(self) -> int:
        return 0

    def close(self) -> None: ...


def test_builtin_tables_are_created_and_committed(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "l.db")
    ledger = FakeLedger(f"sqlite:///{tmp_path / 'l.db'}", conn)
    procs = load_processors(entry_points=False)
    run_setup(procs, ledger)
    run_setup(procs, ledger)  # idempotent: a restart runs it again
    assert ledger.sessions[0].committed
    other = sqlite3.connect(tmp_path / "l.db")  # committed: visible to another connection
    names = {r[0] for r in other.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"rm_loyalty_tier_current", "rm_loyalty_tier_history", "rm_points_transactions",
            "rm_points_cards", "rm_pending_points", "rm_redemptions",
            "rm_message_deliveries"} <= names


def test_a_non_sql_ledger_is_refused_for_builtins_and_fine_otherwise() -> None:
    ledger = FakeLedger("redis://127.0.0.1:6379/0", None)
    with pytest.raises(ConfigError, match=r"loyalty_tiers.*need a SQL ledger.*redis://"):
        run_setup(load_processors(entry_points=False), ledger)

    def noop(event: Event, ctx: Context) -> None: ...

    plain = Processor(name="plain", patterns=("customer.*",), func=noop,
                      setup=lambda conn: None)
    run_setup([plain], ledger)
    assert ledger.sessions[-1].rolled_back


def test_a_failing_setup_names_the_processor_and_rolls_back(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "l.db")
    ledger = FakeLedger("sqlite:///l.db", conn)

    def noop(event: Event, ctx: Context) -> None: ...

    def bad_setup(c: Any) -> None:
        c.execute("CREATE TABLE ok_table (x INTEGER)")
        c.execute("CREATE TABLE (")

    procs = [Processor(name="broken_setup", patterns=("a",), func=noop, setup=bad_setup)]
    with pytest.raises(ConfigError, match="processor 'broken_setup': its setup failed"):
        run_setup(procs, ledger)
    assert ledger.sessions[-1].rolled_back


@pytest.mark.postgres
def test_the_built_ins_set_up_and_run_on_the_real_postgresql_ledger(postgres_url: str) -> None:
    """The PostgreSQL ledger's own connection (a psycopg subclass with lazy savepoints), not a
    plain psycopg one: the built-ins' SQL helper once refused it, and `run` exited 2."""
    from worker.ledger import open_ledger
    from worker.processors.sql import dialect_of

    ledger = open_ledger(postgres_url)
    try:
        procs = load_processors(entry_points=False)
        run_setup(procs, ledger)
        session = ledger.session()
        try:
            assert dialect_of(session.transaction) == "postgresql"
        finally:
            session.rollback()
    finally:
        ledger.close()
