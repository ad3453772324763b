"""SQL ledgers: a processor's writes through `session.transaction` and the done marks commit
together or not at all — after commit, after rollback, and when the worker is killed with
SIGKILL mid-transaction or right after commit."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.ledger._procs import hold_then_wait
from tests.ledger.conftest import Store, backends
from worker.ledger import ClaimState

Keys = Callable[[int], list[str]]
pytestmark = pytest.mark.parametrize("store", backends("sqlite", "postgres"), indirect=True)


class SqlView:
    """Reads the store behind the ledger's back, from a separate connection."""

    def __init__(self, store: Store) -> None:
        self.backend = store.backend
        parts = urlsplit(store.url)
        if store.backend == "sqlite":
            self.path = parts.path[1:]
            self.table = "activity_worker_ledger"
            self.effects = "effects"
            self.insert = f"INSERT INTO {self.effects} (key) VALUES (?)"
        else:
            self.base = urlunsplit(parts._replace(query=""))
            self.table = parts.query.split("table=", 1)[1]
            self.effects = f"{self.table}_effects"
            self.insert = f"INSERT INTO {self.effects} (key) VALUES (%s)"
        self.execute(f"CREATE TABLE IF NOT EXISTS {self.effects} (key TEXT PRIMARY KEY)")

    def execute(self, query: str, params: Any = ()) -> list[Any]:
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.path, timeout=10)
            try:
                rows = conn.execute(query, params).fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        with psycopg.connect(self.base, autocommit=True) as pg:
            cur = pg.execute(query, params)
            return cur.fetchall() if cur.description else []

    def counts(self, keys: list[str]) -> tuple[int, int]:
        """(effect rows, done marks) among `keys`."""
        ph = ",".join(("?" if self.backend == "sqlite" else "%s") for _ in keys)
        effects = self.execute(f"SELECT count(*) FROM {self.effects} WHERE key IN ({ph})", keys)
        marks = self.execute(f"SELECT count(*) FROM {self.table} WHERE key IN ({ph})", keys)
        return int(effects[0][0]), int(marks[0][0])


@pytest.fixture
def sql(store: Store) -> Iterator[SqlView]:
    store.open().ping()  # creates the ledger table
    yield SqlView(store)


def test_effects_and_done_marks_commit_together(store: Store, sql: SqlView, keys: Keys) -> None:
    ks = keys(5)
    session = store.open().session()
    assert session.claim(ks) == [ClaimState.NEW] * 5
    tx = session.transaction
    for k in ks:
        with session.savepoint():
            tx.execute(sql.insert, (k,))
    session.mark_done(ks)
    assert sql.counts(ks) == (0, 0)      # nothing visible before commit
    session.commit()
    assert sql.counts(ks) == (5, 5)


def test_rollback_drops_effects_and_done_marks(store: Store, sql: SqlView, keys: Keys) -> None:
    ks = keys(3)
    ledger = store.open()
    session = ledger.session()
    session.claim(ks)
    for k in ks:
        with session.savepoint():
            session.transaction.execute(sql.insert, (k,))
    session.mark_done(ks)
    session.rollback()
    assert sql.counts(ks) == (0, 0)
    again = ledger.session()
    assert again.claim(ks) == [ClaimState.NEW] * 3
    again.rollback()


def test_failed_processor_writes_roll_back_alone(store: Store, sql: SqlView, keys: Keys) -> None:
    ok, bad = keys(2)
    session = store.open().session()
    session.claim([ok, bad])
    tx = session.transaction
    with session.savepoint():
        tx.execute(sql.insert, (ok,))
    with pytest.raises(RuntimeError), session.savepoint():
        tx.execute(sql.insert, (bad,))
        raise RuntimeError("the processor failed after writing")
    session.mark_done([ok])
    session.release([bad])
    session.commit()
    assert sql.counts([ok]) == (1, 1)
    assert sql.counts([bad]) == (0, 0)


@pytest.mark.parametrize("commit_first", [False, True], ids=["mid-transaction", "after-commit"])
def test_sigkill_leaves_both_or_neither(store: Store, sql: SqlView, keys: Keys,
                                        commit_first: bool) -> None:
    ks = keys(20)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=hold_then_wait, args=(store.url, ks, sql.insert, ready,
                                                     commit_first))
    child.start()
    try:
        assert ready.wait(timeout=60), "the child process never got its batch written"
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    expected = (20, 20) if commit_first else (0, 0)
    assert sql.counts(ks) == expected
    # The store is usable again: the dead transaction's locks go as soon as the server sees the
    # connection closed (BUSY until then, so wait for that with a deadline).
    ledger = store.open()
    deadline = time.monotonic() + 10
    while True:
        session = ledger.session()
        states = session.claim(ks)
        session.rollback()
        if ClaimState.BUSY not in states or time.monotonic() > deadline:
            break
    state = ClaimState.DONE if commit_first else ClaimState.NEW
    assert states == [state] * 20


def test_savepoints_across_a_mixed_batch(store: Store, sql: SqlView, keys: Keys) -> None:
    """Processors that write, that do not touch the database, and that fail after writing or
    without writing, in one batch: exactly the successful writes commit (PostgreSQL creates
    savepoints lazily, so this checks that laziness never loses or leaks a write)."""
    ks = keys(7)
    session = store.open().session()
    assert session.claim(ks) == [ClaimState.NEW] * 7
    tx = session.transaction
    done: list[str] = []

    def run(key: str, body: Callable[[], None]) -> None:
        try:
            with session.savepoint():
                body()
            done.append(key)
        except RuntimeError:
            session.release([key])

    def fail() -> None:
        raise RuntimeError("processor failed")

    def write_then_fail(key: str) -> None:
        tx.execute(sql.insert, (key,))
        fail()

    def write_with_cursor(key: str) -> None:
        cur = tx.cursor()
        cur.execute(sql.insert, (key,))
        cur.close()

    def write_in_nested_transaction(key: str) -> None:
        if store.backend == "postgres":
            with tx.transaction():
                tx.execute(sql.insert, (key,))
        else:
            tx.execute(sql.insert, (key,))

    run(ks[0], lambda: tx.execute(sql.insert, (ks[0],)))
    run(ks[6], lambda: write_in_nested_transaction(ks[6]))
    run(ks[1], lambda: None)
    run(ks[2], lambda: write_then_fail(ks[2]))
    run(ks[3], fail)
    run(ks[4], lambda: write_with_cursor(ks[4]))
    run(ks[5], lambda: None)
    session.mark_done(done)
    session.commit()
    assert done == [ks[0], ks[6], ks[1], ks[4], ks[5]]
    written = {k for k in ks if sql.counts([k])[0]}
    assert written == {ks[0], ks[4], ks[6]}
    marked = {k for k in ks if sql.counts([k])[1]}
    assert marked == set(done)


def test_a_processor_cannot_end_the_batch_transaction(store: Store, sql: SqlView,
                                                      keys: Keys) -> None:
    """commit()/rollback() on ctx.transaction would split effects from done marks: refused."""
    ks = keys(1)
    session = store.open().session()
    session.claim(ks)
    tx = session.transaction
    with pytest.raises(RuntimeError, match="must not commit"), session.savepoint():
        tx.execute(sql.insert, (ks[0],))
        tx.commit()
    with pytest.raises(RuntimeError, match="must not roll back"), session.savepoint():
        tx.rollback()
    if store.backend == "sqlite":
        with pytest.raises(RuntimeError, match="executescript"), session.savepoint():
            tx.executescript("SELECT 1;")
    session.release(ks)
    session.commit()
    assert sql.counts(ks) == (0, 0)
    # Outside a batch the connection is an ordinary one again (e.g. for the ledger's pruning).
    assert store.open().prune() >= 0
