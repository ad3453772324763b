"""Async processors on a real broker: 1,000 customer keys, random per-call latency; every key's
effects are observed in offset order, one at a time, every event's effect once (a second group
reading the same topic with the same ledger repeats none), and keys overlap."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
import uuid
import zlib
from typing import Any

import pytest

from tests.engine.helpers import Running, committed, create_topic, produce
from worker.engine.lifecycle import EXIT_OK
from worker.engine.loop import Engine, EngineConfig
from worker.events import Event
from worker.kafka.config import build_consumer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.ledger import open_ledger
from worker.processing.pipeline import Pipeline
from worker.processors.api import Context, Processor

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

KEYS, PER_KEY, PARTITIONS = 1000, 3, 4


def event_for(n: int, customer: str) -> bytes:
    return (f'{{"id":"evcus_{n:020d}","type":"customer.order.paid","group_id":"v-{n:018d}",'
            f'"created_at":"2024-03-11T12:06:34.423Z","data":{{"customer":{{"id":"{customer}"}}'
            "}}").encode()


class Effects:
    """An async processor with a random 0-8 ms call; records (customer, partition, offset,
    start, end) and the most calls at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rng = random.Random(11)
        self.seen: list[tuple[str, int, int, float, float]] = []
        self.now = self.most = 0

    async def __call__(self, event: Event, ctx: Context) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        t0 = time.perf_counter()
        await asyncio.sleep(self.rng.uniform(0.0, 0.008))
        self.now -= 1
        with self.lock:
            self.seen.append((event.data.customer.id, ctx.partition, ctx.offset,  # type: ignore[union-attr]
                              t0, time.perf_counter()))


def run_group(bootstrap: str, topic: str, group: str, effects: Effects, ledger: Any) -> Engine:
    pipeline = Pipeline([Processor(name="fwd", patterns=("customer.**",), func=effects)],
                        ledger, max_in_flight=256)
    engine = Engine(ConfluentConsumer(build_consumer_config(bootstrap, group, None)), pipeline,
                    EngineConfig(topics=[topic], batch_size=500, drain=True,
                                 install_signals=False, poll_timeout=0.1))
    assert Running(engine).join(120) == EXIT_OK
    return engine


def test_per_key_order_and_once_under_concurrency(kafka_bootstrap: str) -> None:
    topic, group = f"keyed-{uuid.uuid4().hex[:10]}", f"keyed-{uuid.uuid4().hex[:10]}"
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    customers = [f"cust_{k}" for k in range(KEYS) for _ in range(PER_KEY)]
    random.Random(5).shuffle(customers)
    records = [(zlib.crc32(c.encode()) % PARTITIONS, c.encode(), event_for(n, c))
               for n, c in enumerate(customers)]
    produce(kafka_bootstrap, topic, records)
    ledger = open_ledger("memory://")
    effects = Effects()
    run_group(kafka_bootstrap, topic, group, effects, ledger)

    assert len(effects.seen) == KEYS * PER_KEY
    assert len({(p, o) for _, p, o, _, _ in effects.seen}) == KEYS * PER_KEY  # each once
    by_key: dict[str, list[tuple[int, float, float]]] = {}
    for customer, _p, offset, t0, t1 in effects.seen:
        by_key.setdefault(customer, []).append((offset, t0, t1))
    for customer, calls in by_key.items():
        calls.sort(key=lambda c: c[1])  # in the order they started
        assert [o for o, _, _ in calls] == sorted(o for o, _, _ in calls), customer
        for (_, _, end), (_, start, _) in itertools.pairwise(calls):
            assert start >= end, f"{customer}: two effects at once"
    assert effects.most > 50  # keys ran concurrently
    assert sum(committed(kafka_bootstrap, group, topic, PARTITIONS).values()) == KEYS * PER_KEY

    # Redelivery: another group reads everything again; the ledger runs no effect twice.
    again = Effects()
    run_group(kafka_bootstrap, topic, f"{group}-again", again, ledger)
    assert again.seen == []
