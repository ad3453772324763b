"""The real worker as a process against one topic and group, with a processor that records
each event's effect in a SQLite table (`effects`), for end-to-end tests: run --drain, run in the
background with metrics, status --json."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.kafka_helpers import unique_name
from worker.kafka.admin import ensure_topics

REPO = Path(__file__).resolve().parents[1]

EFFECTS_MODULE = '''
from worker.processors import processor


def _setup(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT)")


@processor("customer.**", name="per_event", setup=_setup, requires_transaction=True)
def per_event(event, ctx):
    ctx.transaction.execute("INSERT INTO effects VALUES (?)", (event.id,))
'''


class Worker:
    """`activity-worker` commands against one topic and group, effects in a SQLite file."""

    def __init__(self, bootstrap: str, topic: str, tmp: Path) -> None:
        self.bootstrap, self.topic, self.tmp = bootstrap, topic, tmp
        self.group = unique_name("e2e-group")
        ensure_topics({"bootstrap.servers": bootstrap}, {f"{topic}.dlq": 1})
        (tmp / "effects_table.py").write_text(EFFECTS_MODULE)
        self.db = tmp / "ledger.db"
        self.env = dict(os.environ, PYTHONPATH=f"{tmp}{os.pathsep}{REPO}",
                        WORKER_BUILTIN_PROCESSORS="false", WORKER_BOOTSTRAP_SERVERS=bootstrap)

    def args(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "worker", "run", "--topic", self.topic, "--group",
                self.group, "--processors", "effects_table", "--ledger", f"sqlite:///{self.db}",
                *extra]

    def drain(self) -> subprocess.CompletedProcess[bytes]:
        run = subprocess.run(self.args("--metrics-address", "off", "--drain"), cwd=self.tmp,
                             env=self.env, capture_output=True, timeout=120, check=False)
        assert run.returncode == 0, (run.stdout + run.stderr).decode()[-3000:]
        return run

    def start(self, metrics_port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.args("--metrics-address", f"127.0.0.1:{metrics_port}"),
                                cwd=self.tmp, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def effects(self) -> list[str]:
        if not self.db.exists():
            return []
        conn = sqlite3.connect(self.db)
        try:
            return [r[0] for r in conn.execute("SELECT event_id FROM effects")]
        except sqlite3.OperationalError:  # the table is not there yet
            return []
        finally:
            conn.close()

    def status(self) -> dict[str, Any]:
        run = subprocess.run(
            [sys.executable, "-m", "worker", "status", "--json", "--group", self.group,
             "--topic", self.topic, "--bootstrap-servers", self.bootstrap],
            cwd=self.tmp, env=self.env, capture_output=True, timeout=60, check=False)
        # (3: after a drain the group has no members, which status reports as unhealthy)
        assert run.returncode in (0, 3), (run.stdout + run.stderr).decode()[-3000:]
        doc: dict[str, Any] = json.loads(run.stdout)
        return doc




def kill_at_random_moments(args: list[str], cwd: Path, env: dict[str, str], log: Path,
                           targets: list[int], progress: Callable[[], int],
                           rng: random.Random) -> int:
    """Start the worker (`args`) once per target, wait until `progress()` reaches it, wait a
    random moment more, then SIGKILL it; returns how many times it was killed."""
    killed = 0
    for target in sorted(targets):
        with log.open("ab") as out:
            proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 300
            while progress() < target:
                assert proc.poll() is None, f"worker exited early: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"no progress to {target}"
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.2))  # a random moment inside the stream
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        killed += 1
    return killed
