"""Feeds a WorkerMetrics with realistic values, as a running worker would, so that every series
the dashboard and the alert rules use has data. Paced by Event.wait (it stops on request)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

from worker.observability.health import HealthState
from worker.observability.metrics import WorkerMetrics
from worker.processing.circuit import Circuits
from worker.processing.effects import ConcurrentEffects
from worker.processors.api import Processor
from worker.types import BatchStats, TopicPartition

TOPIC = "customer-activity"
PROCESSORS = ("loyalty_points", "tier_changes", "segment_sync")
UNMATCHED = ("customer.sms.sent", "customer.consents.given")
DL_REASONS = ("schema", "invalid_json", "processor_failed")
STATS_JSON = (Path(__file__).parent / "data" / "librdkafka_stats.json").read_text()


def make_batch(rng: random.Random, size: int = 500) -> BatchStats:
    s = BatchStats(batch_size=size)
    s.consumed[TOPIC] += size
    outcomes: Counter[tuple[str, str]] = Counter()
    for proc in PROCESSORS:
        outcomes[(proc, "ok")] += rng.randint(100, 140)
        outcomes[(proc, "duplicate")] += rng.randint(1, 10)
        outcomes[(proc, "retried")] += rng.randint(0, 3) + 1
        outcomes[(proc, "dead_lettered")] += 1
        outcomes[(proc, "skipped")] += rng.randint(1, 5)
        s.processing_seconds[proc] = [rng.lognormvariate(-6.5, 0.8) for _ in range(150)]
    s.outcomes = outcomes
    for t in UNMATCHED:
        s.unmatched[t] += rng.randint(1, 20)
    for r in DL_REASONS:
        s.dead_letters[r] += 1
    s.latency_seconds = [rng.uniform(0.05, 3.0) for _ in range(size)]
    return s


class Feeder:
    """A stand-in for the running worker's metric calls, on a daemon thread."""

    def __init__(self, metrics: WorkerMetrics, health: HealthState | None = None,
                 interval: float = 0.2, seed: int = 7) -> None:
        self.metrics = metrics
        self.health = health
        self.interval = interval
        self.rng = random.Random(seed)
        self.tps = [TopicPartition(TOPIC, p) for p in range(3)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-feeder", daemon=True)
        self.batches = 0

    def start(self) -> Feeder:
        m = self.metrics
        m.partitions_assigned(self.tps)
        m.set_ledger_up(True)
        m.guardrail_tripped()
        m.record_librdkafka_stats(STATS_JSON)
        self.effects = ConcurrentEffects(64, [async_processor("forwarder")])
        m.watch_effects(self.effects)
        # two destinations: "crm" down (its circuit open), "mail" fine
        self.circuits = Circuits()
        crm = self.circuits.add("crm", 64)
        self.circuits.add("mail", 8)
        for _ in range(crm.policy.failures_to_open):
            crm.failure(retry_after=3600.0)
        m.watch_destinations(self.circuits.all)
        if self.health is not None:
            self.health.set_connected(True)
            self.health.set_assigned(len(self.tps))
            self.health.set_ledger_ok(True)
        self._thread.start()
        return self

    def _run(self) -> None:
        m, rng = self.metrics, self.rng
        offsets = [0, 0, 0]
        while not self._stop.is_set():
            self.batches += 1
            n = self.batches
            m.record_batch(make_batch(rng))
            for op in ("claim", "mark_done", "commit"):
                m.record_ledger_op(op, rng.uniform(0.0005, 0.02), error=(n % 5 == 0))
            for i, tp in enumerate(self.tps):
                if i != 0:  # partition 0 is stuck: its lag grows and its commit never advances
                    offsets[i] += 500
                    m.record_commit(tp, offsets[i])
                lag = 2000 + 300 * n if i == 0 else rng.randint(0, 50)
                m.record_lag(tp, lag, 1.0 * n if i == 0 else rng.uniform(0.0, 0.5))
            # async effects of a running batch: some in flight, some waiting for their key
            self.effects.calls._started = {i: time.perf_counter() - i for i in range(n % 7 + 1)}
            self.effects.calls._per_processor["forwarder"] = n % 7 + 1
            self.effects.calls._queued[(TOPIC, 1)] = rng.randint(1, 40)
            if n % 5 == 0:
                m.record_librdkafka_stats(STATS_JSON)
                # a cooperative rebalance moving partition 2 away and back
                m.partitions_revoked(self.tps[2:])
                m.partitions_assigned(self.tps[2:])
            if n % 10 == 0:
                m.guardrail_tripped()
            if self.health is not None:
                self.health.heartbeat()
                self.health.record_traffic()
                self.health.record_commit_advance()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def async_processor(name: str) -> Processor:
    """An async processor that does nothing (its name labels the effects metrics)."""

    async def func(event: object, ctx: object) -> None:
        return None

    return Processor(name=name, patterns=("customer.**",), func=func)  # type: ignore[arg-type]
