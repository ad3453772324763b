"""Real Redis and PostgreSQL servers for the tests, shared by every test package.

URLs come from ACTIVITY_WORKER_TEST_REDIS_URL / ACTIVITY_WORKER_TEST_POSTGRES_URL (set by
./scripts/test); when unset, the servers are started with deploy/local/redis and
deploy/local/postgres (and stopped again at the end if this run started them). A missing server
binary fails the run with what to run: these tests are never skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "local"


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


