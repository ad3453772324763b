"""Real workers for the console tests: `start_worker(...)` runs `python -m worker run` on the
session broker with its metrics/console address on a free port, waits until /healthz answers,
and stops it at the end of the test.

Ports come from ACTIVITY_WORKER_TEST_HTTP_PORTS (a range, default 39400-39499), so parallel
sessions on one machine can be given ranges of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kafka_helpers import KafkaHelper, can_bind, unique_name
from worker.kafka.admin import ensure_topics

REPO = Path(__file__).resolve().parents[2]
PORTS = os.environ.get("ACTIVITY_WORKER_TEST_HTTP_PORTS", "39400-39499")


def http_port() -> int:
    """A free TCP port of the configured range."""
    low, high = (int(x) for x in PORTS.split("-"))
    for port in range(low, high + 1):
        if can_bind(port):
            return port
    raise AssertionError(f"no free port in {PORTS} (ACTIVITY_WORKER_TEST_HTTP_PORTS)")


@dataclass
class RunningWorker:
    proc: subprocess.Popen[bytes]
    port: int
    topic: str
    group: str
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads line in /proc/PID/status")


def get(url: str, timeout: float = 5.0,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


StartWorker = Callable[..., RunningWorker]


@pytest.fixture
def start_worker(kafka_helper: KafkaHelper, tmp_path: Path) -> Iterator[StartWorker]:
    procs: list[RunningWorker] = []

    def start(topic: str | None = None, group: str | None = None, *extra: str,
              bind: str = "127.0.0.1", partitions: int = 2,
              env: dict[str, str] | None = None) -> RunningWorker:
        if topic is None:
            topic = kafka_helper.new_topic(partitions=partitions, prefix="console")
            ensure_topics({"bootstrap.servers": kafka_helper.bootstrap},
                          {f"{topic}.dlq": partitions})
            kafka_helper.created.append(f"{topic}.dlq")
        group = group or unique_name("console")
        port = http_port()
        log = tmp_path / f"worker-{len(procs)}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
        full_env.update(PYTHONPATH=str(REPO), **(env or {}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run", "--bootstrap-servers",
             kafka_helper.bootstrap, "--topic", topic, "--group", group, "--ledger",
             f"sqlite:///{tmp_path}/ledger-{len(procs)}.db",
             "--metrics-address", f"{bind}:{port}", "--commit-interval", "0.5", *extra],
            cwd=tmp_path, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        worker = RunningWorker(proc, port, topic, group, log)
        procs.append(worker)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"worker exited {proc.returncode}:\n{log.read_text()}"
            try:
                if get(f"{worker.base}/healthz", timeout=2)[0] == 200:
                    return worker
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker's /healthz did not answer in 60 s:\n{log.read_text()}")

    try:
        yield start
    finally:
        for w in procs:
            w.proc.terminate()
        for w in procs:
            try:
                w.proc.wait(60)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(10)
