"""Exactly-once mode through a broker kill -9 on the 3-node cluster: 20,000 events with 10%
redelivered duplicates on 4 partitions (RF 3, min.insync.replicas 2); the real worker process
(`--processing-guarantee exactly-once`) drains them through a processor that emits one record
per event, and the broker that coordinates both the worker's transactions and its consumer group
is killed with -9 mid-stream (the group's name is chosen so that one broker is both), kept down
while the worker carries on, then started again. A read_committed consumer of the output sees one
record per event id, none missing, in per-key order."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.generate import EventGenerator
from devtools.local_cluster import LocalCluster
from tests.cluster.scenario import coordinator_by_hash, partition_leaders, unique
from tests.emit_helpers import check_once_in_order, emit_env, read_output
from tests.engine.helpers import wait_for
from tests.integration.test_kill9_exactly_once_outputs import written
from worker.kafka.admin import ensure_topics
from worker.kafka.produce import produce_records

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

PARTITIONS = 4
OFFSETS, TXN_STATE = "__consumer_offsets", "__transaction_state"


def progress(bootstrap: str, topic: str) -> int:
    """`written`, or -1 while a partition's leader cannot answer (during the failover)."""
    try:
        return written(bootstrap, topic)
    except Exception:
        return -1


def internal_topics_ready(bootstrap: str) -> None:
    """Make Kafka create its two internal topics (a transactional producer's init, a group's
    FindCoordinator) and wait until every partition of them has a leader."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    Producer({"bootstrap.servers": bootstrap,
              "transactional.id": unique("eos-brk-warmup")}).init_transactions(60)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.describe_consumer_groups([unique("eos-brk-warmup")], request_timeout=30)
    wait_for(lambda: all(len(partition_leaders(bootstrap, t)) == 50
                         and min(partition_leaders(bootstrap, t).values()) >= 0
                         for t in (OFFSETS, TXN_STATE)), 120, "the internal topics")


def both_coordinators_on_one_broker(bootstrap: str) -> tuple[str, int]:
    """A group name whose transactional.id (`<group>.w1`) and group are coordinated by the
    same broker, and that broker."""
    while True:
        group = unique("eos-brk")
        node = coordinator_by_hash(bootstrap, TXN_STATE, f"{group}.w1")
        if coordinator_by_hash(bootstrap, OFFSETS, group) == node:
            return group, node


def moved_away_from(node: int, bootstrap: str, out: str, transactional_id: str) -> bool:
    try:
        return (node not in partition_leaders(bootstrap, out).values()
                and coordinator_by_hash(bootstrap, TXN_STATE, transactional_id) not in (node, -1))
    except Exception:  # a metadata request during the failover
        return False


def test_a_broker_killed_mid_stream_leaves_one_committed_record_per_event_id(
        cluster: LocalCluster, tmp_path: Path) -> None:
    bootstrap = cluster.bootstrap
    topic, out = unique("eos-brk-in"), unique("eos-brk-out")
    conf = {"bootstrap.servers": bootstrap}
    replicated = {"min.insync.replicas": "2"}
    ensure_topics(conf, {topic: PARTITIONS, out: PARTITIONS, f"{topic}.dlq": 1},
                  replication_factor=3,
                  topic_config={topic: replicated, out: replicated, f"{topic}.dlq": replicated})
    gen = EventGenerator(seed=73, duplicate_share=0.10)
    records = list(gen.records(20_000))
    produce_records(((r.key, r.value) for r in records), topic, bootstrap)
    internal_topics_ready(bootstrap)
    group, coordinator = both_coordinators_on_one_broker(bootstrap)
    env = emit_env(tmp_path, out, 0.001)  # ~20 s of work: the kill lands mid-stream
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--topic", topic, "--group",
         group, "--bootstrap-servers", bootstrap, "--processors", "emit_one",
         "--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--metrics-address", "off",
         "--processing-guarantee", "exactly-once", "--group-instance-id", "w1", "--drain"],
        cwd=tmp_path, env=env, stdout=log, stderr=log)
    victim = None
    try:
        wait_for(lambda: progress(bootstrap, out) > 4_000, 180, "the stream to flow")
        victim = coordinator
        print(f"{time.strftime('%H:%M:%S')} killing node {victim}, the coordinator of the "
              f"transactions and the group (it leads output partitions "
              f"{sorted(p for p, n in partition_leaders(bootstrap, out).items() if n == victim)})")
        cluster.kill_node(victim)
        wait_for(lambda: moved_away_from(victim, bootstrap, out, f"{group}.w1"), 90,
                 "new leaders for the killed broker's partitions and transactions")
        before = max(0, progress(bootstrap, out))
        wait_for(lambda: progress(bootstrap, out) > before + 2_000 or worker.poll() is not None,
                 180, "the worker to carry on without the broker")
        cluster.start_node(victim, timeout_s=180)
        victim = None
        assert worker.wait(600) == 0, (tmp_path / "worker.log").read_text()[-4000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(30)
        log.close()
        if victim is not None:
            cluster.start_node(victim, timeout_s=180)
    check_once_in_order(read_output(bootstrap, out, PARTITIONS, timeout=120), records)
