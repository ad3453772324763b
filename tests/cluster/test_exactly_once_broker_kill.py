"""Exactly-once mode through a broker kill -9 on the 3-node cluster: 20,000 events with 10%
redelivered duplicates on 4 partitions (RF 3, min.insync.replicas 2); the real worker process
(`--processing-guarantee exactly-once`) drains them through a processor that emits one record
per event, and the broker that leads most of the output topic's partitions is killed with -9
mid-stream, kept down while the worker carries on, then started again. A read_committed consumer
of the output sees one record per event id, none missing, in per-key order."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.generate import EventGenerator
from devtools.local_cluster import LocalCluster
from tests.cluster.scenario import leaders, unique
from tests.emit_helpers import check_once_in_order, emit_env, read_output
from tests.engine.helpers import wait_for
from tests.integration.test_kill9_exactly_once_outputs import written
from worker.kafka.admin import ensure_topics
from worker.kafka.produce import produce_records

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

PARTITIONS = 4


def progress(bootstrap: str, topic: str) -> int:
    """`written`, or -1 while a partition's leader cannot answer (during the failover)."""
    try:
        return written(bootstrap, topic)
    except Exception:
        return -1


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
    env = emit_env(tmp_path, out, 0.001)  # ~20 s of work: the kill lands mid-stream
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--topic", topic, "--group",
         unique("eos-brk"), "--bootstrap-servers", bootstrap, "--processors", "emit_one",
         "--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--metrics-address", "off",
         "--processing-guarantee", "exactly-once", "--group-instance-id", "w1", "--drain"],
        cwd=tmp_path, env=env, stdout=log, stderr=log)
    victim = None
    try:
        wait_for(lambda: progress(bootstrap, out) > 4_000, 180, "the stream to flow")
        victim = leaders(bootstrap, out).most_common(1)[0][0]
        print(f"{time.strftime('%H:%M:%S')} killing node {victim}")
        cluster.kill_node(victim)
        wait_for(lambda: victim not in leaders(bootstrap, out), 90,
                 "new leaders for the killed broker's partitions")
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
