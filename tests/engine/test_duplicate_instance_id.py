"""Two workers started with one `--group-instance-id`, on the real broker and on both group
protocols: one of them stops with exit 2 and a sentence that names the instance id and says
what to do; the other keeps consuming. The classic protocol fences the older member
(FENCED_INSTANCE_ID); KIP-848 refuses the newcomer (UNRELEASED_INSTANCE_ID, reported by
librdkafka as a _FATAL error). (The cluster suite does the same under a live stream.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kafka_helpers import KafkaHelper, unique_name
from worker.engine.lifecycle import EXIT_BAD_SETTINGS
from worker.kafka.admin import ensure_topics

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]


def _start(bootstrap: str, topic: str, group: str, protocol: str, instance: str,
           log: Path, ledger: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--bootstrap-servers", bootstrap,
         "--topic", topic, "--group", group, "--group-protocol", protocol,
         "--group-instance-id", instance, "--ledger", f"sqlite:///{ledger}",
         "--metrics-address", "off", "--commit-interval", "0.5"],
        cwd=log.parent, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_duplicate_instance_id_stops_one_worker_with_a_sentence(
        kafka_helper: KafkaHelper, tmp_path: Path, protocol: str) -> None:
    topic = kafka_helper.new_topic(partitions=2, prefix="dupid")
    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {f"{topic}.dlq": 1})
    kafka_helper.created.append(f"{topic}.dlq")
    group, instance = unique_name("dupid"), unique_name("instance")
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = _start(kafka_helper.bootstrap, topic, group, protocol, instance, logs[0],
                   tmp_path / "ledger-1.db")
    procs = [first]
    try:
        deadline = time.monotonic() + 60
        while "partitions assigned" not in logs[0].read_text(errors="replace"):
            assert first.poll() is None, logs[0].read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the first worker got no partitions in 60 s"
            time.sleep(0.2)
        procs.append(_start(kafka_helper.bootstrap, topic, group, protocol, instance, logs[1],
                            tmp_path / "ledger-2.db"))
        deadline = time.monotonic() + 60
        while all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "neither worker stopped in 60 s"
            time.sleep(0.2)
        stopped = 0 if procs[0].poll() is not None else 1
        # classic: the broker fences the older member; KIP-848 refuses the newcomer
        assert stopped == (0 if protocol == "classic" else 1)
        text = logs[stopped].read_text(errors="replace")
        assert procs[stopped].wait(30) == EXIT_BAD_SETTINGS, text[-3000:]
        assert "group instance id" in text and instance in text and group in text, text[-3000:]
        assert "give each worker its own" in text
        assert "Traceback" not in text
        time.sleep(2)
        assert procs[1 - stopped].poll() is None  # the other one carries on
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
