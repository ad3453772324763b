"""Fixtures for processor tests: a read-model database (SQLite always, PostgreSQL when
ACTIVITY_WORKER_TEST_POSTGRES_URL names a server) and helpers to build and run events."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.events import Event, decode_event
from worker.processors.api import Context, Processor
from worker.processors.discovery import load_processors
from worker.processors.sql import Sql

_counter = iter(range(1, 10**9))


def make_event(type_: str, data: Any, *, event_id: str | None = None,
               group_id: str = "v-0e30613ab3ad14a9c1",
               created_at: str = "2024-03-11T12:06:34.423Z") -> Event:
    """An Event decoded from wire JSON, as the pipeline would hand it over."""
    raw = json.dumps({"id": event_id or f"evcus_{next(_counter):018x}", "type": type_,
                      "group_id": group_id, "created_at": created_at, "data": data})
    return decode_event(raw.encode())


def builtin(name: str) -> Processor:
    for proc in load_processors(entry_points=False):
        if proc.name == name:
            return proc
    raise LookupError(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A DB-API connection inside an open transaction, like ctx.transaction on a SQL ledger."""
    if request.param == "sqlite":
        connection = sqlite3.connect(tmp_path / "ledger.db")
        yield connection
        connection.close()
        return
    url = request.getfixturevalue("postgres_url")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    connection = psycopg.connect(url)
    connection.execute(f"CREATE SCHEMA {schema}")
    connection.execute(f"SET search_path TO {schema}")
    connection.commit()
    try:
        yield connection
    finally:
        connection.rollback()
        connection.execute(f"DROP SCHEMA {schema} CASCADE")
        connection.commit()
        connection.close()


Runner = Callable[[Event], None]


@pytest.fixture
def run_with(conn: Any) -> Callable[[str], Runner]:
    """run_with("loyalty_tiers") -> run(event): set up the tables once, then process each
    event in its own committed transaction (as the ledger would)."""

    def factory(name: str) -> Runner:
        proc = builtin(name)
        assert proc.setup is not None
        proc.setup(conn)
        conn.commit()

        def run(event: Event) -> None:
            proc.func(event, Context(proc, event, "customer-activity", 0, 0, conn))
            conn.commit()

        return run

    return factory


@pytest.fixture
def query(conn: Any) -> Callable[..., list[tuple[Any, ...]]]:
    sql = Sql(conn)
    return lambda q, *params: sql.fetchall(q, params)
