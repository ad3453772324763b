"""What this worker shows on its console: one of the engine's observers (worker.observer), fed
once per batch, rebalance and commit like the metrics, and read by the console's requests.

It keeps counts and the partitions it holds, never an event's payload, a key or a setting's
value (the ledger is shown by its kind only: its URL may carry a password)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from worker import __version__
from worker.observability.collectors import Destination, Effects
from worker.observer import WorkerObserver
from worker.types import BatchResult, TopicPartition
from worker.vocabulary import Outcome

__all__ = ["RATE_BUCKETS", "RATE_BUCKET_SECONDS", "ConsoleState"]

#: events/s is shown per 10-second bucket over the last 10 minutes.
RATE_BUCKET_SECONDS = 10
RATE_BUCKETS = 60


@dataclass(slots=True)
class _Held:
    lag: int | None = None
    lag_seconds: float | None = None
    committed: int | None = None
    advanced_at: float = 0.0  # monotonic: assigned, or the commit last moved forward


class ConsoleState(WorkerObserver):
    def __init__(self, group: str, topics: Sequence[str], ledger_kind: str,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self.group, self.topics, self.ledger_kind = group, list(topics), ledger_kind
        self.started_at = wall()
        self._started = clock()
        self._held: dict[TopicPartition, _Held] = {}
        self._outcomes: Counter[tuple[str, str]] = Counter()
        self._dead_letters: Counter[str] = Counter()
        self._consumed = 0
        self._unmatched = 0
        self._batches = 0
        self._rebalances = 0
        # (bucket number, events) for the last RATE_BUCKETS buckets
        self._rates: deque[list[int]] = deque(maxlen=RATE_BUCKETS)
        self._connected = False
        self._dlq_writable = True
        self._ledger_up: Callable[[], bool] = lambda: True
        self._effects: Effects | None = None
        self._readiness: Callable[[], tuple[bool, list[str]]] | None = None
        self._destinations: Callable[[], Iterable[Destination]] = lambda: ()

    # -- wiring --------------------------------------------------------------------------------
    def watch(self, ledger_up: Callable[[], bool], effects: Effects | None,
              readiness: Callable[[], tuple[bool, list[str]]] | None,
              destinations: Callable[[], Iterable[Destination]] | None = None) -> None:
        """`destinations`: each destination's circuit breaker (worker.processing.circuit)."""
        self._ledger_up, self._effects, self._readiness = ledger_up, effects, readiness
        if destinations is not None:
            self._destinations = destinations

    # -- the engine's hooks --------------------------------------------------------------------
    def batch_finished(self, result: BatchResult) -> None:
        stats = result.stats
        consumed = sum(stats.consumed.values())
        bucket = int((self._clock() - self._started) // RATE_BUCKET_SECONDS)
        with self._lock:
            self._batches += 1
            if result.completed:
                self._consumed += consumed
                self._outcomes.update(stats.outcomes)
                self._dead_letters.update(stats.dead_letters)
                self._unmatched += sum(stats.unmatched.values())
                if self._rates and self._rates[-1][0] == bucket:
                    self._rates[-1][1] += consumed
                else:
                    self._rates.append([bucket, consumed])

    def partitions_assigned(self, tps: Sequence[TopicPartition]) -> None:
        now = self._clock()
        with self._lock:
            self._rebalances += 1
            for tp in tps:
                self._held.setdefault(tp, _Held(advanced_at=now))

    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None:
        self._drop(tps)

    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None:
        self._drop(tps)

    def _drop(self, tps: Sequence[TopicPartition]) -> None:
        with self._lock:
            self._rebalances += 1
            for tp in tps:
                self._held.pop(tp, None)

    def record_lag(self, tp: TopicPartition, lag_offsets: int,
                   lag_seconds: float | None) -> None:
        with self._lock:
            held = self._held.get(tp)
            if held is not None:
                held.lag = max(0, lag_offsets)
                held.lag_seconds = 0.0 if lag_offsets <= 0 else lag_seconds

    def record_commit(self, tp: TopicPartition, offset: int) -> None:
        with self._lock:
            held = self._held.get(tp)
            if held is not None and (held.committed is None or offset > held.committed):
                held.committed = offset
                held.advanced_at = self._clock()

    def set_connected(self, connected: bool) -> None:
        self._connected = connected

    def set_dlq_writable(self, ok: bool) -> None:
        self._dlq_writable = ok

    # -- read by the console -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The `worker` part of /status.json (docs/observability.md#the-console)."""
        now = self._clock()
        bucket_now = int((now - self._started) // RATE_BUCKET_SECONDS)
        with self._lock:
            held = sorted(self._held.items(), key=lambda kv: (kv[0].topic, kv[0].partition))
            partitions = [{"topic": tp.topic, "partition": tp.partition, "lag": h.lag,
                           "lag_seconds": h.lag_seconds, "committed": h.committed,
                           "commit_age_seconds": round(now - h.advanced_at, 1)}
                          for tp, h in held]
            by_bucket = dict((b, n) for b, n in self._rates)
            outcomes = Counter(self._outcomes)
            dead = Counter(self._dead_letters)
            totals = {"consumed": self._consumed, "batches": self._batches,
                      "unmatched": self._unmatched, "rebalances": self._rebalances}
        first = bucket_now - RATE_BUCKETS + 1
        rates = [round(by_bucket.get(b, 0) / RATE_BUCKET_SECONDS, 2)
                 for b in range(first, bucket_now + 1)]
        names = sorted({proc for proc, _ in outcomes})
        processors = [{"name": name, **{str(o): outcomes[(name, o)] for o in Outcome}}
                      for name in names]
        ready, reasons = self._readiness() if self._readiness else (self._connected, [])
        effects = None
        if self._effects is not None:
            in_flight = self._effects.in_flight_by_processor()
            effects = {"in_flight": sum(in_flight.values()), "by_processor": in_flight,
                       "queued": sum(self._effects.queued_by_partition().values()),
                       "oldest_age_seconds": round(self._effects.oldest_age(), 3),
                       "max_in_flight": self._effects.max_in_flight}
        return {
            "version": __version__, "host": socket.gethostname(), "pid": os.getpid(),
            "group": self.group, "topics": self.topics,
            "started_at": self.started_at, "uptime_seconds": round(now - self._started, 1),
            "connected": self._connected, "ready": ready, "ready_reasons": reasons,
            "ledger": {"kind": self.ledger_kind, "up": self._ledger_up()},
            "dlq_writable": self._dlq_writable,
            "partitions": partitions,
            "events_per_second": {"bucket_seconds": RATE_BUCKET_SECONDS, "rates": rates},
            "totals": totals, "processors": processors,
            "retries": outcomes_total(outcomes, Outcome.RETRIED),
            "dead_letters": [{"reason": r, "count": n} for r, n in dead.most_common()],
            "effects": effects,
            "destinations": [{"name": d.name, "state": str(d.state),
                              "down_seconds": round(d.down_seconds(), 1),
                              "concurrency_limit": d.current_limit(),
                              "calls_refused": d.refused, "opened": d.opened}
                             for d in sorted(self._destinations(), key=lambda d: d.name)],
        }


def outcomes_total(outcomes: Counter[tuple[str, str]], outcome: Outcome) -> int:
    return sum(n for (_, o), n in outcomes.items() if o == outcome)
