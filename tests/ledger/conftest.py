"""Fixtures for the ledger tests: real Redis and PostgreSQL servers, one factory over all four
backends, and throwaway servers that a test may stop and start.

Server URLs come from ACTIVITY_WORKER_TEST_REDIS_URL / ACTIVITY_WORKER_TEST_POSTGRES_URL; when
unset, the servers are started with deploy/local/redis and deploy/local/postgres (and stopped
again at the end if this run started them). A missing server binary fails the test run with
what to run, it is never skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from worker.ledger import Ledger, open_ledger

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "local"
BACKENDS = ["memory", "sqlite", "redis", "postgres"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    """A server run by a deploy/local script (up|down|status) with its own port and dir."""

    kind: str            # "redis" or "postgres"
    port: int
    local_dir: Path

    def _run(self, action: str) -> str:
        env = dict(os.environ)
        env["ACTIVITY_WORKER_LOCAL_DIR"] = str(self.local_dir)
        env[f"ACTIVITY_WORKER_{self.kind.upper()}_PORT"] = str(self.port)
        proc = subprocess.run([str(DEPLOY / self.kind), action], env=env, capture_output=True,
                              text=True, timeout=120)
        if action != "status" and proc.returncode != 0:
            pytest.fail(f"deploy/local/{self.kind} {action} failed: {proc.stderr.strip()} "
                        "(install the servers with deploy/local/install-services)")
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def up(self) -> str:
        return self._run("up").splitlines()[-1]

    def down(self) -> None:
        self._run("down")

    def running(self) -> bool:
        return bool(self._run("status"))


def _server_url(kind: str, env_name: str) -> Iterator[str]:
    url = os.environ.get(env_name)
    if url:
        yield url
        return
    port = int(os.environ.get(f"ACTIVITY_WORKER_{kind.upper()}_PORT",
                              "6390" if kind == "redis" else "5439"))
    server = LocalServer(kind, port, Path(os.environ.get("ACTIVITY_WORKER_LOCAL_DIR",
                                                         REPO / ".local")))
    was_running = server.running()
    url = server.up()
    yield url
    if not was_running:
        server.down()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from _server_url("redis", "ACTIVITY_WORKER_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    yield from _server_url("postgres", "ACTIVITY_WORKER_TEST_POSTGRES_URL")


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


@pytest.fixture(params=BACKENDS)
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
