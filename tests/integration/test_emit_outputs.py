"""Emitted records on the real broker, at-least-once mode: the real worker process drains a
stream with 10% redelivered duplicates through a processor that emits one record per event;
the output topic holds one record per event id, keyed like the event, in per-key order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.generate import EventGenerator
from tests.emit_helpers import check_once_in_order, emit_env, read_output
from tests.kafka_helpers import KafkaHelper, unique_name
from worker.kafka.admin import ensure_topics
from worker.kafka.produce import produce_records

pytestmark = pytest.mark.kafka



def test_emitted_records_arrive_keyed_once_per_event_in_key_order(
        kafka_helper: KafkaHelper, tmp_path: Path) -> None:
    topic = kafka_helper.new_topic(partitions=3, prefix="emit-in")
    out = kafka_helper.new_topic(partitions=3, prefix="emit-out")
    ensure_topics({"bootstrap.servers": kafka_helper.bootstrap}, {f"{topic}.dlq": 1})
    gen = EventGenerator(seed=7, duplicate_share=0.10, bad_share=0.0)
    records = list(gen.records(2_000))
    produce_records(((r.key, r.value) for r in records), topic, kafka_helper.bootstrap)
    env = emit_env(tmp_path, out)
    run = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--topic", topic, "--group",
         unique_name("emit"), "--bootstrap-servers", kafka_helper.bootstrap,
         "--processors", "emit_one", "--ledger", f"sqlite:///{tmp_path / 'l.db'}",
         "--metrics-address", "off", "--batch-size", "100", "--drain"],
        cwd=tmp_path, env=env, capture_output=True, timeout=180, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()[-3000:]
    check_once_in_order(read_output(kafka_helper.bootstrap, out, 3), records)
