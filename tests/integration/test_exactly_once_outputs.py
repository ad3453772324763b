"""Exactly-once mode on the real broker: the real worker process (`--processing-guarantee
exactly-once`) drains a stream with 10% redelivered duplicates (the same event at another offset)
through a processor that emits one record per event; a read_committed consumer of the output
sees one record per event id, keyed, in per-key order (the emitted marks in the changelog
topic drop the duplicates), and
the group's committed offsets (written by the transactions, never by the consumer) are at the
end of the input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from devtools.generate import EventGenerator
from tests.emit_helpers import check_once_in_order, emit_env, read_output
from tests.kafka_helpers import KafkaHelper, unique_name
from worker.kafka.admin import ensure_topics
from worker.kafka.produce import produce_records

pytestmark = pytest.mark.kafka



def worker_args(topic: str, group: str, bootstrap: str, tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "worker", "run", "--topic", topic, "--group", group,
            "--bootstrap-servers", bootstrap, "--processors", "emit_one",
            "--ledger", f"sqlite:///{tmp / 'l.db'}", "--metrics-address", "off",
            "--processing-guarantee", "exactly-once", *extra]


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("ends")})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
    finally:
        c.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in got]
    finally:
        c.close()


def test_a_drained_stream_emits_one_record_per_event_id_and_commits_offsets_in_transactions(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    topic = kafka_helper.new_topic(partitions=3, prefix="eos-in")
    out = kafka_helper.new_topic(partitions=3, prefix="eos-out")
    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {f"{topic}.dlq": 1})
    gen = EventGenerator(seed=11, duplicate_share=0.10)
    records = list(gen.records(1_500))
    assert gen.counts.duplicates >= 100
    produce_records(((r.key, r.value) for r in records), topic, kafka_helper.bootstrap)
    env = emit_env(tmp_path, out)
    group = unique_name("eos")
    run = subprocess.run(worker_args(topic, group, kafka_helper.bootstrap, tmp_path,
                                     "--batch-size", "100", "--drain"),
                         cwd=tmp_path, env=env, capture_output=True, timeout=180, check=False)
    logs = (run.stdout + run.stderr).decode()
    assert run.returncode == 0, logs[-3000:]
    assert "transactional producer ready" in logs
    check_once_in_order(read_output(kafka_helper.bootstrap, out, 3), records)
    ends = end_offsets(kafka_helper.bootstrap, topic, 3)
    assert sum(ends) == len(records)
    assert committed_offsets(kafka_helper.bootstrap, group, topic, 3) == ends
