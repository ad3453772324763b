"""Fixtures for the ledger tests: real Redis and PostgreSQL servers, one factory over all four
backends, and throwaway servers that a test may stop and start.

Server URLs come from ACTIVITY_WORKER_TEST_REDIS_URL / ACTIVITY_WORKER_TEST_POSTGRES_URL; when
unset, the servers are started with deploy/local/redis and deploy/local/postgres (and stopped
again at the end if this run started them). A missing server binary fails the test run with
what to run, it is never skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.servers import LocalServer, free_port, postgres_url, redis_url  # noqa: F401
from worker.ledger import Ledger, open_ledger

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "local"
BACKENDS = ["memory", "sqlite", "redis", "postgres"]


def backends(*names: str) -> list[Any]:
    """Parameters for the `store` fixture, marked `redis`/`postgres` where they need a server
    (so `-m "not postgres"` deselects them)."""
    marks = {"redis": [pytest.mark.redis], "postgres": [pytest.mark.postgres]}
    return [pytest.param(n, id=n, marks=marks.get(n, [])) for n in names or BACKENDS]


def with_option(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


@dataclass
class Store:
    """Where one test's ledgers live: every `open()` reaches the same keys."""

    backend: str
    url: str
    shared: Any = None   # the one MemoryLedger (memory has no store outside the process)

    def open(self, **kw: Any) -> Ledger:
        if self.backend == "memory":
            if kw or self.shared is None:
                self.shared = open_ledger(self.url, **kw)
            return self.shared  # type: ignore[no-any-return]
        return open_ledger(self.url, **kw)

    @property
    def transactional(self) -> bool:
        return self.backend in ("sqlite", "postgres")


@pytest.fixture(params=backends())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, isolated ledger store per test: its own SQLite file, Redis key prefix or
    PostgreSQL table."""
    backend: str = request.param
    tag = uuid.uuid4().hex[:12]
    if backend == "memory":
        yield Store(backend, "memory://")
    elif backend == "sqlite":
        yield Store(backend, f"sqlite:///{tmp_path}/ledger.db")
    elif backend == "redis":
        base = request.getfixturevalue("redis_url")
        prefix = f"test-{tag}:"
        yield Store(backend, with_option(base, "prefix", prefix))
        client = redis.Redis.from_url(base)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        base = request.getfixturevalue("postgres_url")
        table = f"ledger_test_{tag}"
        yield Store(backend, with_option(base, "table", table))
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"DROP TABLE IF EXISTS {table}_effects")


@pytest.fixture
def keys() -> Callable[[int], list[str]]:
    def make(n: int) -> list[str]:
        tag = uuid.uuid4().hex[:8]
        return [f"proc:v-{tag}:evcus_{i:06d}" for i in range(n)]
    return make


@pytest.fixture
def throwaway(tmp_path: Path) -> Iterator[Callable[[str], LocalServer]]:
    """Start private servers a test may stop and restart; all are stopped afterwards."""
    started: list[LocalServer] = []

    def make(kind: str) -> LocalServer:
        server = LocalServer(kind, free_port(), tmp_path / f"{kind}-local")
        started.append(server)
        return server

    yield make
    for server in started:
        server.down()


def store_done(ledger: Ledger, ks: list[str]) -> None:
    """One session that claims `ks` (all new) and marks them done."""
    s = ledger.session()
    s.claim(ks)
    s.mark_done(ks)
    s.commit()
