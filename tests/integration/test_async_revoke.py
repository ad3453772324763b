"""Async effects on a real broker with two workers: worker B joins while A has batches in flight
(overlapping, one ledger shared as a Redis or memory ledger would be), so A's partitions are
revoked mid-flight. A slow key does not hold up the others, a key that fails twice is retried
while the others flow, every event's effect happens once, and each key's effects stay in
offset order across the hand-over."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

import pytest

from tests.engine.helpers import Running, committed, create_topic, produce, wait_for
from worker.engine.lifecycle import EXIT_OK
from worker.engine.loop import Engine, EngineConfig
from worker.events import Event
from worker.kafka.config import build_consumer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.ledger import open_ledger
from worker.ledger.base import Ledger
from worker.observer import WorkerObserver
from worker.processing.pipeline import Pipeline
from worker.processors.api import Context, Processor, RetryPolicy
from worker.types import TopicPartition

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

KEYS, PER_KEY, PARTITIONS = 200, 10, 4
SEQ = itertools.count()


def event_for(n: int, customer: str) -> bytes:
    return (f'{{"id":"evcus_{n:020d}","type":"customer.order.paid","group_id":"v-{n:018d}",'
            f'"created_at":"2024-03-11T12:06:34.423Z","data":{{"customer":{{"id":"{customer}"}}'
            "}}").encode()


class Effects:
    """cust_0 is slow (0.4 s a call), cust_1 fails its first two attempts; the others take
    10 ms. Records each effect that happened: (customer, offset, start, end, worker)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: list[tuple[str, int, float, float, str]] = []
        self.failures = 2

    def processor(self, worker: str) -> Processor:
        async def fwd(event: Event, ctx: Context) -> None:
            customer = event.data.customer.id  # type: ignore[union-attr]
            t0 = time.monotonic()
            if customer == "cust_1" and self.failures:
                self.failures -= 1
                raise RuntimeError("endpoint down (test)")
            await asyncio.sleep(0.4 if customer == "cust_0" else 0.01)
            with self.lock:
                self.done.append((customer, ctx.offset, t0, time.monotonic(), worker))

        return Processor(name="fwd", patterns=("customer.**",), func=fwd,
                         retry=RetryPolicy(max_attempts=4, initial_backoff=0.3))


class Revokes(WorkerObserver):
    def __init__(self) -> None:
        self.revoked = threading.Event()

    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None:
        self.revoked.set()


def worker(bootstrap: str, topic: str, group: str, effects: Effects, name: str,
           ledger: Ledger, watch: Any) -> Running:
    pipeline = Pipeline([effects.processor(name)], ledger, max_in_flight=64)
    assert pipeline.overlaps
    config = build_consumer_config(bootstrap, group, {"heartbeat.interval.ms": "300"})
    return Running(Engine(ConfluentConsumer(config), pipeline, EngineConfig(
        topics=[topic], batch_size=50, install_signals=False, poll_timeout=0.1,
        commit_interval=0.2, revoke_timeout=0.3), observers=[watch]))


def test_revoke_mid_flight_with_two_workers(kafka_bootstrap: str) -> None:
    topic, group = f"revoke-{uuid.uuid4().hex[:8]}", f"revoke-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    customers = [f"cust_{(n * 7919) % KEYS}" for n in range(KEYS * PER_KEY)]
    produce(kafka_bootstrap, topic, [(zlib.crc32(c.encode()) % PARTITIONS, c.encode(),
                                      event_for(n, c)) for n, c in enumerate(customers)])
    ledger, effects = open_ledger("memory://"), Effects()
    watch_a, watch_b = Revokes(), Revokes()
    a = worker(kafka_bootstrap, topic, group, effects, "a", ledger, watch_a)
    wait_for(lambda: len(effects.done) >= 200, 30, "A well under way")
    b = worker(kafka_bootstrap, topic, group, effects, "b", ledger, watch_b)
    assert watch_a.revoked.wait(30), "A's partitions were not revoked"
    wait_for(lambda: len({(c, o) for c, o, *_ in effects.done}) >= KEYS * PER_KEY, 60,
             "every effect")
    assert a.stop() == EXIT_OK and b.stop() == EXIT_OK

    seen = [(c, o) for c, o, *_ in effects.done]
    assert len(seen) == len(set(seen)) == KEYS * PER_KEY  # each effect once, across both
    assert {w for *_, w in effects.done} == {"a", "b"}
    by_key: dict[str, list[tuple[int, float, float]]] = {}
    for c, o, t0, t1, _ in effects.done:
        by_key.setdefault(c, []).append((o, t0, t1))
    for c, calls in by_key.items():
        calls.sort(key=lambda x: x[1])
        assert [o for o, _, _ in calls] == sorted(o for o, _, _ in calls), c
    # the slow key's ten 0.4 s effects took ~4 s; the other keys did not wait for it
    slow_end = max(t1 for _, _, t1 in by_key["cust_0"])
    others_end = sorted(t1 for c, calls in by_key.items() if c not in ("cust_0", "cust_1")
                        for _, _, t1 in calls)
    assert others_end[int(len(others_end) * 0.9)] < slow_end - 1.0
    # the failing key was retried (0.3 + 0.6 s) while the others flowed, and finished
    assert len(by_key["cust_1"]) == PER_KEY
    assert sum(committed(kafka_bootstrap, group, topic, PARTITIONS).values()) == KEYS * PER_KEY
