"""Every Prometheus metric of the worker, declared in this one module (prefix `activity_worker_`).

A `WorkerMetrics` owns its own `CollectorRegistry` (never the global default), so tests can build
several side by side. It is one of the engine's observers (worker.observer): the hot path never
touches it per event; the pipeline fills a `BatchStats` with plain dict/list operations, the
engine hands the batch's result over once (`batch_finished`), which makes one `inc(n)` per
distinct label set and one histogram update per label set. Names and buckets are in
worker.observability.metric_names; the scrape-time collectors in worker.observability.collectors,
worker.observability.librdkafka_stats and worker.observability.batch_histogram.
Metrics off means no WorkerMetrics among the observers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from worker.observability.batch_histogram import BatchHistogram
from worker.observability.collectors import (
    Destination,
    DestinationsCollector,
    Effects,
    EffectsCollector,
    PartitionCollector,
)
from worker.observability.librdkafka_stats import LibrdkafkaCollector, parse_librdkafka

# re-exported: tests, docs and benches read them here
from worker.observability.metric_names import (
    ASSIGNED_PARTITIONS,
    BATCH_SIZE,
    BATCH_SIZE_BUCKETS,
    DEAD_LETTERS,
    DLQ_LETTERS_SHRUNK,
    DLQ_WRITE_FAILING,
    DLQ_WRITE_FAILURES,
    END_TO_END_LATENCY_SECONDS,
    EVENTS_CONSUMED,
    GUARDRAIL_TRIPS,
    KNOWN_DLQ_REASONS,
    LATENCY_BUCKETS,
    LEDGER_BUCKETS,
    LEDGER_OPERATION_ERRORS,
    LEDGER_OPERATION_SECONDS,
    LEDGER_UP,
    LIBRDKAFKA_STATS_ERRORS,
    MAX_UNMATCHED_TYPES,
    METRIC_NAMES,
    OUTCOMES,
    PREFIX,
    PROCESSING_BUCKETS,
    PROCESSING_SECONDS,
    PROCESSOR_CALL_AGE_SECONDS,
    PROCESSOR_OUTCOMES,
    REBALANCE_KINDS,
    REBALANCES,
    UNMATCHED_EVENTS,
)
from worker.observer import WorkerObserver
from worker.types import BatchResult, BatchStats, TopicPartition

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "KNOWN_DLQ_REASONS",
    "LATENCY_BUCKETS",
    "LEDGER_BUCKETS",
    "METRIC_NAMES",
    "OUTCOMES",
    "PREFIX",
    "PROCESSING_BUCKETS",
    "WorkerMetrics",
]


class WorkerMetrics(WorkerObserver):
    """All the worker's metrics, on a registry of their own. Thread-safe; cheap per batch."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._clock = clock
        self._lock = threading.Lock()

        self._consumed = Counter(EVENTS_CONSUMED, "Events consumed, by topic.", ["topic"],
                                 registry=r)
        self._outcomes = Counter(PROCESSOR_OUTCOMES, "Processor results per event: ok, "
                                 "duplicate, retried, dead_lettered.",
                                 ["processor", "outcome"], registry=r)
        self._unmatched = Counter(UNMATCHED_EVENTS, "Events whose type matched no processor, "
                                  "by type (capped; the rest are 'other').", ["type"], registry=r)
        self._dead_letters = Counter(DEAD_LETTERS, "Events written to the dead-letter topic, "
                                     "by reason (error class).", ["reason"], registry=r)
        self._rebalances = Counter(REBALANCES, "Rebalance callbacks, by kind: assigned, "
                                   "revoked, lost.", ["kind"], registry=r)
        self._ledger_errors = Counter(LEDGER_OPERATION_ERRORS, "Ledger operations that failed, "
                                      "by operation.", ["op"], registry=r)
        self._guardrail = Counter(GUARDRAIL_TRIPS, "Times the dead-letter guardrail stopped the "
                                  "worker.", registry=r)
        self._dlq_failures = Counter(DLQ_WRITE_FAILURES, "Attempts to write a batch's dead "
                                     "letters that failed (the worker pauses, retries with "
                                     "backoff, and commits nothing past them).", registry=r)
        self._dlq_failing = Gauge(DLQ_WRITE_FAILING, "1 while the last attempt to write dead "
                                  "letters failed (consumption is paused), else 0.", registry=r)
        self._dlq_shrunk = Counter(DLQ_LETTERS_SHRUNK, "Dead letters written shrunk because the "
                                   "original record plus the worker's headers did not fit the "
                                   "dead-letter topic.", registry=r)
        self._call_age = Gauge(PROCESSOR_CALL_AGE_SECONDS, "How long the processor call in "
                               "progress has been running (0 when none is).", registry=r)
        self._stats_errors = Counter(LIBRDKAFKA_STATS_ERRORS, "librdkafka statistics payloads "
                                     "that could not be parsed.", registry=r)
        self._assigned = Gauge(ASSIGNED_PARTITIONS, "Partitions currently assigned to this "
                               "worker.", registry=r)
        self._ledger_up = Gauge(LEDGER_UP, "1 if the last ledger check succeeded, else 0.",
                                registry=r)

        self._processing = BatchHistogram(PROCESSING_SECONDS, "Seconds per processor call.",
                                           ["processor"], PROCESSING_BUCKETS)
        self._latency = BatchHistogram(END_TO_END_LATENCY_SECONDS, "Now minus the event's "
                                        "Kafka timestamp when its batch finished.", [],
                                        LATENCY_BUCKETS)
        self._batch_size = BatchHistogram(BATCH_SIZE, "Events per batch.", [],
                                           BATCH_SIZE_BUCKETS)
        self._ledger_seconds = BatchHistogram(LEDGER_OPERATION_SECONDS, "Seconds per ledger "
                                               "operation, by operation.", ["op"], LEDGER_BUCKETS)
        self._partitions = PartitionCollector(clock)
        self._librdkafka = LibrdkafkaCollector()
        for c in (self._processing, self._latency, self._batch_size, self._ledger_seconds,
                  self._partitions, self._librdkafka):
            r.register(c)

        # Cached label children: a dict lookup instead of a labels() call (~2-3 µs) per batch.
        self._children: dict[tuple[int, tuple[str, ...]], Counter] = {}
        self._unmatched_types: set[str] = set()
        for kind in REBALANCE_KINDS:
            self._rebalances.labels(kind)  # export zeros so rate()/increase() work from start
        for reason in KNOWN_DLQ_REASONS:
            self._child(self._dead_letters, (reason,))

    def _child(self, counter: Counter, labelvalues: tuple[str, ...]) -> Counter:
        key = (id(counter), labelvalues)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labelvalues)
        return child

    # -- per batch ---------------------------------------------------------------------------
    def batch_finished(self, result: BatchResult) -> None:
        stats = result.stats
        if result.completed:
            self.record_batch(stats)
        for op, seconds in stats.ledger_seconds.items():
            self._ledger_seconds.observe_many((op,), seconds)
            errors = self._child(self._ledger_errors, (op,))  # exported at 0 once op is seen
            if stats.ledger_errors[op]:
                errors.inc(stats.ledger_errors[op])

    def record_batch(self, stats: BatchStats) -> None:
        """Fold one batch's aggregated counts into the metrics (one call per batch)."""
        child = self._child
        if stats.batch_size:
            self._batch_size.observe((), float(stats.batch_size))
        for topic, n in stats.consumed.items():
            child(self._consumed, (topic,)).inc(n)
        for (proc, outcome), n in stats.outcomes.items():
            child(self._outcomes, (proc, outcome)).inc(n)
        for etype, n in stats.unmatched.items():
            if etype not in self._unmatched_types:
                if len(self._unmatched_types) >= MAX_UNMATCHED_TYPES:
                    etype = "other"
                else:
                    self._unmatched_types.add(etype)
            child(self._unmatched, (etype,)).inc(n)
        for reason, n in stats.dead_letters.items():
            child(self._dead_letters, (reason,)).inc(n)
        for proc, seconds in stats.processing_seconds.items():
            self._processing.observe_many((proc,), seconds)
        if stats.latency_seconds:
            self._latency.observe_many((), stats.latency_seconds)

    # -- partitions --------------------------------------------------------------------------
    def partitions_assigned(self, tps: Sequence[TopicPartition]) -> None:
        """An assignment (eager: the whole set; cooperative: the increment)."""
        self._rebalances.labels("assigned").inc()
        parts = self._partitions
        with parts._lock:
            for tp in tps:
                parts.state(tp)
            self._assigned.set(len(parts.parts))

    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None:
        self._rebalances.labels("revoked").inc()
        self._drop(tps)

    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None:
        self._rebalances.labels("lost").inc()
        self._drop(tps)

    def _drop(self, tps: Sequence[TopicPartition]) -> None:
        parts = self._partitions
        with parts._lock:
            for tp in tps:
                parts.parts.pop(tp, None)
            self._assigned.set(len(parts.parts))

    def record_lag(self, tp: TopicPartition, lag_offsets: int,
                   lag_seconds: float | None) -> None:
        """Lag from the watermarks. lag_seconds None means unknown: it is exported as 0 when
        lag_offsets is 0, and not exported at all otherwise (rather than a stale value)."""
        parts = self._partitions
        with parts._lock:
            st = parts.state(tp)
            st.lag_offsets = max(0, lag_offsets)
            if lag_offsets <= 0:
                st.lag_seconds = 0.0
            else:
                st.lag_seconds = None if lag_seconds is None else max(0.0, lag_seconds)

    def record_open_transaction(self, tp: TopicPartition, seconds: float) -> None:
        parts = self._partitions
        with parts._lock:
            parts.state(tp).open_transaction_s = max(0.0, seconds)

    def record_commit(self, tp: TopicPartition, offset: int) -> None:
        """A committed offset for tp; the commit age resets only when it moves forward."""
        parts = self._partitions
        with parts._lock:
            st = parts.state(tp)
            if offset > st.committed:
                st.committed = offset
                st.advanced_at = self._clock()

    # -- librdkafka, ledger, guardrail ---------------------------------------------------------
    def record_librdkafka_stats(self, stats_json: str) -> None:
        """For confluent-kafka's `stats_cb`. Never raises: a bad payload is counted."""
        try:
            self._librdkafka.snapshot = parse_librdkafka(stats_json)
        except (ValueError, TypeError, AttributeError):
            self._stats_errors.inc()

    def record_ledger_op(self, op: str, seconds: float, error: bool) -> None:
        self._ledger_seconds.observe((op,), seconds)
        errors = self._child(self._ledger_errors, (op,))  # exported at 0 once the op is seen
        if error:
            errors.inc()

    def guardrail_tripped(self) -> None:
        self._guardrail.inc()

    def dlq_write(self, ok: bool, shrunk: int = 0) -> None:
        """A batch's dead letters were written (ok) or could not be (not ok)."""
        if not ok:
            self._dlq_failures.inc()
        if shrunk:
            self._dlq_shrunk.inc(shrunk)
        self._dlq_failing.set(0.0 if ok else 1.0)

    def watch_processor_call(self, age: Callable[[], float]) -> None:
        """Read the age of the processor call in progress at each scrape (no per-call cost)."""
        self._call_age.set_function(age)

    def set_ledger_up(self, up: bool) -> None:
        self._ledger_up.set(1.0 if up else 0.0)

    def watch_effects(self, effects: Effects) -> None:
        """Show the async processors' effects (worker.processing.effects), read at each scrape (a
        worker without async processors passes `NoEffects`: the same series, at 0)."""
        self.registry.register(EffectsCollector(effects))

    def watch_destinations(self, destinations: Callable[[], Iterable[Destination]]) -> None:
        """Show each destination's circuit breaker (worker.processing.circuit), read at each
        scrape."""
        self.registry.register(DestinationsCollector(destinations))

    def watch_ledger(self, up: Callable[[], bool]) -> None:
        """Read whether the ledger answers at each scrape (the pipeline's `ledger_up`): it shows
        while a batch is still retrying against a ledger that is down."""
        self._ledger_up.set_function(lambda: 1.0 if up() else 0.0)


def sample_names(registry: CollectorRegistry) -> Iterator[str]:
    """Every sample name the registry exposes now (for tests and docs checks)."""
    for family in registry.collect():
        for sample in family.samples:
            yield sample.name
