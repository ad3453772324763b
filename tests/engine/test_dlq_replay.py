"""`activity-worker dlq show|replay` against the real broker: letters written by the real DLQ
producer are listed, replayed with their original key, value and headers, filtered by error
class, and never replayed twice (the replay group commits only acknowledged batches)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.engine.helpers import create_topic, read_all
from tests.kafka_helpers import unique_name
from worker.kafka.config import build_consumer_config, producer_config
from worker.kafka.dead_letter_producer import DeadLetterProducer
from worker.types import DeadLetter, LocalMessage

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
LETTERS = [("schema", None), ("schema", None), ("schema", None),
           ("processor_failed", "loyalty_tiers"), ("processor_failed", "loyalty_tiers"),
           ("invalid_json", None)]


def cli(bootstrap: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "WORKER_"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "worker", "dlq", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("wm")})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
    finally:
        c.close()


def write_letters(bootstrap: str, source: str, letters: list[tuple[str, str | None]],
                  first: int = 0) -> None:
    dlq = DeadLetterProducer(producer_config(build_consumer_config(bootstrap, "dlq-writer")))
    batch = []
    for i, (error_class, proc) in enumerate(letters, start=first):
        msg = LocalMessage(f'{{"n":{i}}}'.encode(), source, i % 2, i, f"k{i}".encode(),
                           [("trace", f"t{i}".encode())])
        batch.append(DeadLetter(msg, error_class, f"$.x: reason {i}", proc, 1))
    dlq.send(batch)
    dlq.close()


def test_show_and_replay_with_filters_resume_and_original_bytes(kafka_bootstrap: str) -> None:
    b = kafka_bootstrap
    source, target = unique_name("replay-src"), unique_name("replay-to")
    dlq = f"{source}.dlq"
    for name in (source, dlq, target):
        create_topic(b, name, 2)
    write_letters(b, source, LETTERS)

    shown = cli(b, "show", dlq)
    assert f"{dlq}: 6 dead letter(s)" in shown
    assert "schema                         3" in shown
    assert "processor_failed               2" in shown
    assert "loyalty_tiers                  2" in shown

    dry = cli(b, "replay", dlq, "--error-class", "schema", "--to", target, "--dry-run")
    assert "read 6, would replay 3, skipped 3" in dry
    assert high_watermarks(b, target, 2) == [0, 0]  # nothing produced

    done = cli(b, "replay", dlq, "--error-class", "schema", "--error-class",
               "processor_failed", "--to", target)
    assert "read 6, replayed 5, skipped 1" in done
    got = read_all(b, target, 5)
    assert len(got) == 5
    by_key = {m.key(): m for m in got}
    for i, (error_class, _proc) in enumerate(LETTERS):
        key = f"k{i}".encode()
        if error_class == "invalid_json":
            assert key not in by_key
            continue
        m = by_key[key]
        assert m.value() == f'{{"n":{i}}}'.encode()
        headers = dict(m.headers() or [])
        assert headers["trace"] == f"t{i}".encode()
        assert headers["worker.replayed_from"].startswith(f"{dlq}:".encode())
        assert not [h for h in headers if h.startswith("worker.error")]

    again = cli(b, "replay", dlq, "--to", target)
    assert "read 0, replayed 0" in again  # the replay group is past all six

    write_letters(b, source, [("schema", None)], first=100)
    more = cli(b, "replay", dlq)  # to the letter's own source topic this time
    assert "read 1, replayed 1" in more
    assert f"to {source}: 1" in more
    assert [m.key() for m in read_all(b, source, 1)] == [b"k100"]
