"""kill -9 in exactly-once mode, on the real broker: 20,000 events with 10% redelivered
duplicates (the same event at another offset) on a 4-partition topic; the real worker process
(`--processing-guarantee exactly-once`, a static member so that each restart keeps its
transactional.id) emits one record per event and is killed with SIGKILL five times at random
moments, restarted each time; a last run drains the topic. A read_committed consumer of the
output then sees one record per event id, none missing, in per-key order, and nothing of the
transactions the kills aborted (a read_uncommitted one sees their records: the kills did cut
transactions). One record in 50 is not JSON: their dead letters are written in the same
transactions, so a read_committed reader of the dead-letter topic (as `dlq replay` reads it)
sees one letter per bad record, none twice."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from devtools.generate import EventGenerator
from tests.emit_helpers import check_once_in_order, emit_env, read_output
from tests.kafka_helpers import KafkaHelper, unique_name
from tests.worker_process import kill_at_random_moments
from worker.kafka.admin import ensure_topics
from worker.kafka.dead_letter_format import Letter
from worker.kafka.dead_letter_replay import read_letters
from worker.kafka.produce import produce_records

pytestmark = pytest.mark.kafka

PARTITIONS = 4


def written(bootstrap: str, topic: str) -> int:
    """Records and markers written to `topic` so far (aborted ones too)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("hw")})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(PARTITIONS))
    finally:
        c.close()


@pytest.mark.parametrize(("events", "kills"), [(20_000, 5)])
def test_sigkill_at_random_moments_leaves_one_committed_record_per_event_id(
        kafka_helper: KafkaHelper, tmp_path: Path, events: int, kills: int) -> None:
    topic = kafka_helper.new_topic(partitions=PARTITIONS, prefix="eos-kill-in")
    out = kafka_helper.new_topic(partitions=PARTITIONS, prefix="eos-kill-out")
    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {f"{topic}.dlq": 1})
    gen = EventGenerator(seed=events + 29, duplicate_share=0.10)
    records = list(gen.records(events))
    assert gen.counts.duplicates >= events * 0.09
    stream: list[tuple[bytes, bytes]] = []
    for i, r in enumerate(records):
        stream.append((r.key, r.value))
        if i % 50 == 0:  # among the good ones, so that the kills cut transactions with letters
            stream.append((r.key, b'{"truncated ' + str(i).encode()))
    bad = len(stream) - len(records)
    produce_records(stream, topic, kafka_helper.bootstrap)
    env = emit_env(tmp_path, out)
    base = [sys.executable, "-m", "worker", "run", "--topic", topic, "--group",
            unique_name("eos-kill"), "--bootstrap-servers", kafka_helper.bootstrap,
            "--processors", "emit_one", "--ledger", f"sqlite:///{tmp_path / 'l.db'}",
            "--metrics-address", "off", "--batch-size", "200",
            "--processing-guarantee", "exactly-once", "--group-instance-id", "worker-0",
            "--kafka-config", "session.timeout.ms=6000"]
    killed = kill_at_random_moments(
        base, tmp_path, env, tmp_path / "worker.log",
        random.Random().sample(range(events // 15, events * 4 // 5), kills),
        lambda: written(kafka_helper.bootstrap, out), random.Random())
    final = subprocess.run([*base, "--drain"], cwd=tmp_path, env=env, capture_output=True,
                           timeout=900, check=False)
    assert final.returncode == 0, (final.stdout + final.stderr).decode()[-4000:]
    assert killed == kills

    committed = read_output(kafka_helper.bootstrap, out, PARTITIONS, timeout=120)
    check_once_in_order(committed, records)
    letters: list[Letter] = []
    read_letters({"bootstrap.servers": kafka_helper.bootstrap}, f"{topic}.dlq", letters.extend,
                 timeout=60)
    sources = Counter((d.source_partition, d.source_offset) for d in letters)
    assert len(sources) == bad, (len(sources), bad)
    assert {n for n in sources.values()} == {1}, "a dead letter written twice"
    everything = read_output(kafka_helper.bootstrap, out, PARTITIONS, timeout=120,
                             isolation="read_uncommitted")
    assert len(everything) > len(committed), "no kill cut a transaction: the test proved little"
