"""A zombie in exactly-once mode, on the real broker: two workers (static members `a` and `b`)
share a stream that emits one record per event; `a` is frozen with SIGSTOP (almost always in the
middle of a transaction: a batch takes ~0.4 s) until its partitions have moved to `b` and `b`
has carried on with them, then resumed. `a`'s transaction is aborted (the broker ends it at the
transaction timeout, and the group refuses `a`'s stale generation), `a` learns that its
partitions were lost, rejoins and carries on, and a read_committed consumer of the output sees
one record per event id, in per-key order."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from devtools.generate import EventGenerator
from tests.emit_helpers import check_once_in_order, emit_env, read_output
from tests.integration.test_kill9_exactly_once_outputs import written
from tests.kafka_helpers import KafkaHelper, unique_name
from worker.kafka.admin import ensure_topics
from worker.kafka.produce import produce_records

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(400)]



def assignment(bootstrap: str, group: str) -> dict[str, int]:
    """group.instance.id -> partitions it holds now."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
    except Exception:
        return {}
    return {m.group_instance_id or "": len(m.assignment.topic_partitions)
            for m in desc.members}


def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_frozen_worker_is_fenced_and_the_output_holds_no_duplicate(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    bootstrap = kafka_helper.bootstrap
    topic = kafka_helper.new_topic(partitions=4, prefix="eos-zombie-in")
    out = kafka_helper.new_topic(partitions=4, prefix="eos-zombie-out")
    ensure_topics({"bootstrap.servers": bootstrap}, {f"{topic}.dlq": 1})
    gen = EventGenerator(seed=41, duplicate_share=0.10)
    records = list(gen.records(6_000))
    produce_records(((r.key, r.value) for r in records), topic, bootstrap)
    env = emit_env(tmp_path, out, 0.004)  # ~0.4 s a batch: a frozen worker is mid-transaction
    group = unique_name("eos-zombie")
    print(f"input {topic}, output {out}, group {group}")  # (shown when the test fails)

    def args(instance: str, ledger: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "worker", "run", "--topic", topic, "--group", group,
                "--bootstrap-servers", bootstrap, "--processors", "emit_one",
                "--ledger", f"sqlite:///{tmp_path / ledger}", "--metrics-address", "off",
                "--batch-size", "100", "--processing-guarantee", "exactly-once",
                "--group-instance-id", instance,
                "--kafka-config", "session.timeout.ms=6000",
                "--kafka-config", "transaction.timeout.ms=10000", *extra]

    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("a", "b")}
    a = subprocess.Popen(args("a", "a.db"), cwd=tmp_path, env=env, stdout=logs["a"],
                         stderr=logs["a"])
    b = subprocess.Popen(args("b", "b.db"), cwd=tmp_path, env=env, stdout=logs["b"],
                         stderr=logs["b"])
    try:
        wait_until(lambda: assignment(bootstrap, group) == {"a": 2, "b": 2}, 60,
                   "both workers to hold two partitions")
        wait_until(lambda: written(bootstrap, out) > 1_000, 120, "the stream to flow")
        a.send_signal(signal.SIGSTOP)
        wait_until(lambda: assignment(bootstrap, group) == {"b": 4}, 60,
                   "a's partitions to move to b")
        moved_at = written(bootstrap, out)
        wait_until(lambda: written(bootstrap, out) > moved_at + 500, 120,
                   "b to carry on with a's partitions")
        a.send_signal(signal.SIGCONT)
        wait_until(lambda: assignment(bootstrap, group) == {"a": 2, "b": 2}, 60,
                   "a to rejoin")
        wait_until(lambda: b"partitions lost" in (tmp_path / "a.log").read_bytes(), 60,
                   "a to learn that its partitions were lost")
    finally:
        for proc in (a, b):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        for proc in (a, b):
            proc.wait(60)
        for f in logs.values():
            f.close()
    final = subprocess.run(args("a", "a.db", "--drain"), cwd=tmp_path, env=env,
                           capture_output=True, timeout=300, check=False)
    (tmp_path / "final.log").write_bytes(final.stdout + final.stderr)
    assert final.returncode == 0, (final.stdout + final.stderr).decode()[-4000:]
    check_once_in_order(read_output(bootstrap, out, 4, timeout=120), records)
