"""Topics written by transactional producers (Kafka Streams, Flink, Quix Streams in exactly-once
mode), through the real broker and the real worker: committed and aborted transactions
interleaved, a transaction left open, and events compressed with every codec by a producer that
is not the worker's own (Kafka's Java console producer). The worker processes each committed
event once and none of an aborted transaction; its committed offsets reach the last stable
offset, so `run --drain` ends and lag is 0 as the worker, `status` and Kafka's own
ConsumerGroupCommand count it; an open transaction shows as its own condition."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.engine.helpers import committed, end_offsets, produce_transactions, wait_for
from tests.kafka_helpers import KafkaHelper, free_port, unique_name
from tests.kafka_tools import console_produce, group_lag
from tests.worker_process import Worker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def event(n: int) -> bytes:
    return json.dumps({
        "id": f"evcus_txn{n:06d}", "type": "customer.loyalty.tier.joined",
        "group_id": f"v-txn-{n:06d}", "created_at": "2026-06-01T10:00:00.000Z",
        "data": {"customer": {"id": f"cust_{n % 7}"},
                 "loyalty_tier": {"id": "ltr_1", "points": {"from": 0, "to": 100}}}},
        separators=(",", ":")).encode()


def test_drain_ends_at_the_last_stable_offset_with_lag_0_everywhere(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    topic = kafka_helper.new_topic(partitions=6, prefix="txn")
    # interleaved across the partitions; p0, p2, p4 end with an aborted transaction, p1, p3,
    # p5 with a committed one; some transactions span no more than one record
    txns = [(p, n, commit) for round_ in range(4) for p in range(6)
            for n, commit in [(1 + (round_ * 7 + p * 3) % 40,
                               (round_ + p) % 3 != 0 if round_ < 3 else p % 2 == 1)]]
    values: dict[int, bytes] = {}

    def value(n: int) -> bytes:
        values[n] = event(n)
        return values[n]

    kept = produce_transactions(kafka_helper.bootstrap, topic, txns, value)
    assert 0 < len(kept) < len(values)  # some aborted
    worker = Worker(kafka_helper.bootstrap, topic, tmp_path)
    started = time.monotonic()
    worker.drain()
    took = time.monotonic() - started
    seen = worker.effects()
    assert len(seen) == len(set(seen)) == len(kept)  # each committed event once, none aborted
    ends = end_offsets(kafka_helper.bootstrap, topic, 6)
    assert committed(kafka_helper.bootstrap, worker.group, topic, 6) == ends
    doc = worker.status()
    assert [p["lag"] for p in doc["partitions"]] == [0] * 6
    assert all(p["open_transaction_since"] is None for p in doc["partitions"])
    kafka_view = group_lag(kafka_helper.bootstrap, worker.group)
    assert {k: v[2] for k, v in kafka_view.items()} == {(topic, p): 0 for p in range(6)}
    assert took < 60, f"drain took {took:.1f}s"


def test_an_open_transaction_is_its_own_condition_and_its_events_come_once_it_commits(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    topic = kafka_helper.new_topic(partitions=2, prefix="txn-open")
    kept = produce_transactions(kafka_helper.bootstrap, topic, [(0, 5, True), (1, 5, True)],
                                event)
    # a transaction left open on partition 0, after the committed ones
    open_txn = Producer({"bootstrap.servers": kafka_helper.bootstrap,
                         "transactional.id": unique_name("open-txn"),
                         "transaction.timeout.ms": 240_000})
    open_txn.init_transactions(30)
    open_txn.begin_transaction()
    for n in range(100, 103):
        open_txn.produce(topic, value=event(n), partition=0)
    assert open_txn.flush(30) == 0
    worker = Worker(kafka_helper.bootstrap, topic, tmp_path)
    worker.drain()  # ends at the last stable offset: 6 on both partitions
    assert len(worker.effects()) == len(kept) == 10
    ends = end_offsets(kafka_helper.bootstrap, topic, 2)
    assert ends == {0: 9, 1: 6}  # the high watermark counts the open transaction's records
    assert end_offsets(kafka_helper.bootstrap, topic, 2, stable=True) == {0: 6, 1: 6}
    assert committed(kafka_helper.bootstrap, worker.group, topic, 2) == {0: 6, 1: 6}
    doc = worker.status()
    p0, p1 = doc["partitions"]
    assert (p0["lag"], p0["end"], p0["high_watermark"]) == (0, 6, 9)
    assert p0["open_transaction_since"] is not None and p1["open_transaction_since"] is None
    shown = subprocess.run(
        [sys.executable, "-m", "worker", "status", "--group", worker.group, "--topic", topic,
         "--bootstrap-servers", kafka_helper.bootstrap],
        env=worker.env, capture_output=True, timeout=60, check=False).stdout.decode()
    assert f"an open transaction holds {topic}[0] at offset 6" in shown, shown

    port = free_port()
    proc = worker.start(port)
    try:
        def metric(name: str, partition: int) -> float | None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=5).read().decode()
            except OSError:
                return None
            for line in body.splitlines():
                if line.startswith(name + "{") and f'partition="{partition}"' in line:
                    return float(line.rsplit(" ", 1)[1])
            return None

        wait_for(lambda: (metric("activity_worker_open_transaction_seconds", 0) or 0) > 0, 60,
                 "the open transaction in the metrics")
        assert metric("activity_worker_open_transaction_seconds", 1) == 0
        assert metric("activity_worker_consumer_lag_offsets", 0) == 0  # not counted as lag

        def console_says() -> str:
            try:
                doc = json.loads(urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/status.json", timeout=5).read())
            except OSError:
                return ""
            return str((doc.get("group_summary") or {}).get("open_transactions") or "")

        said = wait_for(console_says, 60, "the open transaction on the console")
        assert f"an open transaction holds {topic}[0] at offset 6" in said
        open_txn.commit_transaction(30)
        wait_for(lambda: len(worker.effects()) == 13, 60, "the open transaction's events")
        wait_for(lambda: metric("activity_worker_open_transaction_seconds", 0) == 0, 60,
                 "the condition cleared")
        wait_for(lambda: committed(kafka_helper.bootstrap, worker.group, topic, 2)
                 == {0: 10, 1: 6}, 60, "the commit past the transaction's marker")
    finally:
        proc.terminate()
        proc.wait(60)
    assert sorted(worker.effects()) == sorted(set(worker.effects()))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_events_compressed_by_another_producer_are_processed(
        kafka_helper: KafkaHelper, tmp_path: Path, codec: str) -> None:
    topic = kafka_helper.new_topic(partitions=1, prefix=f"codec-{codec}")
    console_produce(kafka_helper.bootstrap, topic, [event(n) for n in range(200)], codec)
    worker = Worker(kafka_helper.bootstrap, topic, tmp_path)
    run = worker.drain()
    assert sorted(worker.effects()) == [f"evcus_txn{n:06d}" for n in range(200)]
    assert b'"dead_letters": 0' in run.stdout + run.stderr or b"dead_letters=0" in (
        run.stdout + run.stderr)
