"""A worker with no partition is ready: two real workers in one group on a one-partition topic
of the real broker; the one left without a partition answers /readyz 200 and says it has 0
(a Kubernetes replica beyond the partition count must not block a PodDisruptionBudget)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.http_helpers import get_json
from tests.kafka_helpers import KafkaHelper, free_port, unique_name
from worker.kafka.admin import ensure_topics

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]


def _ready(port: int) -> tuple[int, dict[str, object]] | None:
    return get_json(f"http://127.0.0.1:{port}/readyz")


def test_the_worker_without_a_partition_is_ready(kafka_helper: KafkaHelper,
                                                  tmp_path: Path) -> None:
    topic = kafka_helper.new_topic(partitions=1, prefix="ready")
    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {f"{topic}.dlq": 1})
    kafka_helper.created.append(f"{topic}.dlq")
    group = unique_name("ready")
    env = dict(os.environ, PYTHONPATH=str(REPO), WORKER_BUILTIN_PROCESSORS="false")
    ports = [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> None:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "worker", "run", "--bootstrap-servers",
             kafka_helper.bootstrap, "--topic", topic, "--group", group, "--ledger", "memory://",
             "--metrics-address", f"127.0.0.1:{port}"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait_for(want: list[tuple[int, object]]) -> list[tuple[int, object]]:
        deadline = time.monotonic() + 90
        got: list[tuple[int, object]] = []
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs)
            seen = [_ready(port) for port in ports[:len(procs)]]
            got = [(s[0], s[1]["assigned_partitions"]) for s in seen if s]
            if got == want:
                break
            time.sleep(0.3)
        return got

    try:
        start(ports[0])  # the first member takes the only partition
        assert wait_for([(200, 1)]) == [(200, 1)]
        start(ports[1])  # the second joins with none: it sees no assignment, no message
        assert wait_for([(200, 1), (200, 0)]) == [(200, 1), (200, 0)]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
