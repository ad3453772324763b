"""Every Prometheus metric of the worker, declared in this one module (prefix `activity_worker_`).

A `WorkerMetrics` owns its own `CollectorRegistry` (never the global default), so tests can build
several side by side. The hot path never touches it per event: the pipeline fills a `BatchStats`
with plain dict/list operations and hands it over once per batch (`record_batch`), which makes
one `inc(n)` per distinct label set and one histogram update per label set.

Histograms of per-call timings (`processing_seconds`, `end_to_end_latency_seconds`) use
`_BatchHistogram`, a small custom collector: a batch's values are sorted once (C speed) and each
bucket's cumulative count is one `bisect` into the sorted list, so the cost is
O(n log n) in C plus O(buckets) in Python per batch instead of one locked `observe()` per value.

Per-partition series (lag, committed offset, commit age) live in `_PartitionCollector` and are
computed at scrape time: "seconds since the committed offset last advanced" is `now - when it
last advanced`, so it keeps growing while nothing commits, and series of revoked partitions
disappear instead of going stale. librdkafka's statistics are parsed into a snapshot that
`_LibrdkafkaCollector` renders at scrape time, for the same reason.

`NULL_METRICS` is a `WorkerMetrics` whose recording methods do nothing: the engine benchmark
runs with it to measure what metrics cost.
"""

from __future__ import annotations

import json
import math
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from worker.observability.stats import BatchStats
from worker.types import TopicPartition
from worker.vocabulary import ErrorClass, Outcome

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS",
    "LEDGER_BUCKETS",
    "METRIC_NAMES",
    "NULL_METRICS",
    "OUTCOMES",
    "PREFIX",
    "PROCESSING_BUCKETS",
    "NullMetrics",
    "WorkerMetrics",
]

PREFIX = "activity_worker_"

# Names as exposed (counters get `_total` added by prometheus_client; histograms get
# `_bucket`/`_sum`/`_count`). docs/observability.md documents each one.
EVENTS_CONSUMED = PREFIX + "events_consumed"
PROCESSOR_OUTCOMES = PREFIX + "processor_outcomes"
UNMATCHED_EVENTS = PREFIX + "unmatched_events"
DEAD_LETTERS = PREFIX + "dead_letters"
PROCESSING_SECONDS = PREFIX + "processing_seconds"
END_TO_END_LATENCY_SECONDS = PREFIX + "end_to_end_latency_seconds"
BATCH_SIZE = PREFIX + "batch_size"
CONSUMER_LAG_OFFSETS = PREFIX + "consumer_lag_offsets"
CONSUMER_LAG_SECONDS = PREFIX + "consumer_lag_seconds"
COMMITTED_OFFSET = PREFIX + "committed_offset"
COMMIT_AGE_SECONDS = PREFIX + "commit_age_seconds"
ASSIGNED_PARTITIONS = PREFIX + "assigned_partitions"
REBALANCES = PREFIX + "rebalances"
LEDGER_OPERATION_SECONDS = PREFIX + "ledger_operation_seconds"
LEDGER_OPERATION_ERRORS = PREFIX + "ledger_operation_errors"
LEDGER_UP = PREFIX + "ledger_up"
GUARDRAIL_TRIPS = PREFIX + "guardrail_trips"
DLQ_WRITE_FAILURES = PREFIX + "dlq_write_failures"
DLQ_WRITE_FAILING = PREFIX + "dlq_write_failing"
DLQ_LETTERS_SHRUNK = PREFIX + "dlq_letters_shrunk"
PROCESSOR_CALL_AGE_SECONDS = PREFIX + "processor_call_age_seconds"
LIBRDKAFKA_REPLYQ = PREFIX + "librdkafka_replyq"
LIBRDKAFKA_MSG_CNT = PREFIX + "librdkafka_msg_cnt"
LIBRDKAFKA_BROKER_UP = PREFIX + "librdkafka_broker_up"
LIBRDKAFKA_BROKER_RTT_AVG_SECONDS = PREFIX + "librdkafka_broker_rtt_avg_seconds"
LIBRDKAFKA_BROKER_RTT_P99_SECONDS = PREFIX + "librdkafka_broker_rtt_p99_seconds"
LIBRDKAFKA_CONSUMER_LAG = PREFIX + "librdkafka_consumer_lag"
LIBRDKAFKA_FETCHQ_MESSAGES = PREFIX + "librdkafka_fetchq_messages"
LIBRDKAFKA_REBALANCES = PREFIX + "librdkafka_rebalances"
LIBRDKAFKA_REBALANCE_AGE_SECONDS = PREFIX + "librdkafka_rebalance_age_seconds"
LIBRDKAFKA_ASSIGNMENT_SIZE = PREFIX + "librdkafka_assignment_size"
LIBRDKAFKA_STATS_ERRORS = PREFIX + "librdkafka_stats_errors"

METRIC_NAMES: tuple[str, ...] = tuple(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str)
    and v.startswith(PREFIX) and v != PREFIX
)

OUTCOMES = tuple(Outcome)
# Error classes of worker.errors / the pipeline, exported at 0 from the start so dashboards and
# rate() see a series before the first dead letter (other reasons appear when they happen).
KNOWN_DLQ_REASONS = tuple(ErrorClass)
REBALANCE_KINDS = ("assigned", "revoked", "lost")

PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                      1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                   900.0, 3600.0)
BATCH_SIZE_BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0)
LEDGER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Event types are an open set written by producers: cap the label values so a feed of junk
# types cannot blow up the number of series. Types past the cap are counted as "other".
MAX_UNMATCHED_TYPES = 200


class _HistState:
    __slots__ = ("count", "cumulative", "total")

    def __init__(self, n_buckets: int) -> None:
        self.cumulative = [0] * n_buckets
        self.count = 0
        self.total = 0.0


class _BatchHistogram:
    """A histogram fed a whole batch of values at a time (see the module docstring)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(sorted(buckets))
        self._le = [repr(float(b)) for b in self.buckets]
        self._lock = threading.Lock()
        self._states: dict[tuple[str, ...], _HistState] = {}

    def observe_many(self, labelvalues: tuple[str, ...], values: Iterable[float]) -> None:
        ordered = sorted(values)
        if not ordered:
            return
        cumulative = [bisect_right(ordered, b) for b in self.buckets]
        total = math.fsum(ordered)
        with self._lock:
            state = self._states.get(labelvalues)
            if state is None:
                state = self._states[labelvalues] = _HistState(len(self.buckets))
            acc = state.cumulative
            for i, c in enumerate(cumulative):
                acc[i] += c
            state.count += len(ordered)
            state.total += total

    def observe(self, labelvalues: tuple[str, ...], value: float) -> None:
        first = bisect_left(self.buckets, value)  # first bucket whose bound >= value
        with self._lock:
            state = self._states.get(labelvalues)
            if state is None:
                state = self._states[labelvalues] = _HistState(len(self.buckets))
            acc = state.cumulative
            for j in range(first, len(acc)):
                acc[j] += 1
            state.count += 1
            state.total += value

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(k, list(s.cumulative), s.count, s.total) for k, s in self._states.items()]
        for labelvalues, cumulative, count, total in snapshot:
            buckets = [(le, float(c)) for le, c in zip(self._le, cumulative, strict=True)]
            buckets.append(("+Inf", float(count)))
            family.add_metric(list(labelvalues), buckets, sum_value=total)
        return [family]


@dataclass(slots=True)
class _PartState:
    advanced_at: float
    committed: int = -1
    lag_offsets: int | None = None
    lag_seconds: float | None = None


class _PartitionCollector:
    """Per-partition gauges computed at scrape time; revoked partitions drop out."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.parts: dict[TopicPartition, _PartState] = {}

    def state(self, tp: TopicPartition) -> _PartState:
        st = self.parts.get(tp)
        if st is None:
            st = self.parts[tp] = _PartState(advanced_at=self._clock())
        return st

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                                 GaugeMetricFamily]:
        labels = ["topic", "partition"]
        return (
            GaugeMetricFamily(CONSUMER_LAG_OFFSETS, "Messages between the partition's high "
                              "watermark and the worker's position.", labels=labels),
            GaugeMetricFamily(CONSUMER_LAG_SECONDS, "Age of the oldest unprocessed message of "
                              "the partition (0 when caught up).", labels=labels),
            GaugeMetricFamily(COMMITTED_OFFSET, "Last offset committed for the partition.",
                              labels=labels),
            GaugeMetricFamily(COMMIT_AGE_SECONDS, "Seconds since the committed offset of the "
                              "partition last advanced (or since it was assigned).",
                              labels=labels),
        )

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> list[Metric]:
        lag, lag_s, committed, age = self._families()
        now = self._clock()
        with self._lock:
            items = [(tp, st.lag_offsets, st.lag_seconds, st.committed, st.advanced_at)
                     for tp, st in self.parts.items()]
        for tp, lag_offsets, lag_seconds, offset, advanced_at in items:
            labels = [tp.topic, str(tp.partition)]
            if lag_offsets is not None:
                lag.add_metric(labels, float(lag_offsets))
            if lag_seconds is not None:
                lag_s.add_metric(labels, lag_seconds)
            if offset >= 0:
                committed.add_metric(labels, float(offset))
            age.add_metric(labels, max(0.0, now - advanced_at))
        return [lag, lag_s, committed, age]


@dataclass(slots=True)
class _RdkSnapshot:
    replyq: float = 0.0
    msg_cnt: float = 0.0
    brokers: list[tuple[str, bool, float, float]] = field(default_factory=list)
    partitions: list[tuple[str, str, float | None, float]] = field(default_factory=list)
    rebalance_cnt: float | None = None
    rebalance_age_s: float | None = None
    assignment_size: float | None = None


def _parse_librdkafka(stats_json: str) -> _RdkSnapshot:
    """Pick the fields we export from librdkafka's statistics JSON (see its STATISTICS.md)."""
    doc = json.loads(stats_json)
    if not isinstance(doc, dict):
        raise ValueError("statistics are not a JSON object")
    snap = _RdkSnapshot(replyq=float(doc.get("replyq", 0)), msg_cnt=float(doc.get("msg_cnt", 0)))
    for name, b in (doc.get("brokers") or {}).items():
        if int(b.get("nodeid", -1)) < 0:
            continue  # bootstrap and logical brokers (GroupCoordinator) duplicate real ones
        rtt = b.get("rtt") or {}
        snap.brokers.append((str(name), b.get("state") == "UP",
                             float(rtt.get("avg", 0)) / 1e6, float(rtt.get("p99", 0)) / 1e6))
    for topic, t in (doc.get("topics") or {}).items():
        for pid, p in (t.get("partitions") or {}).items():
            if str(pid) == "-1":
                continue  # librdkafka's internal "unassigned" partition
            lag = int(p.get("consumer_lag", -1))
            snap.partitions.append((str(topic), str(pid), float(lag) if lag >= 0 else None,
                                    float(p.get("fetchq_cnt", 0))))
    cgrp = doc.get("cgrp")
    if isinstance(cgrp, dict):
        snap.rebalance_cnt = float(cgrp.get("rebalance_cnt", 0))
        snap.rebalance_age_s = float(cgrp.get("rebalance_age", 0)) / 1e3
        snap.assignment_size = float(cgrp.get("assignment_size", 0))
    return snap


class _LibrdkafkaCollector:
    def __init__(self) -> None:
        self.snapshot: _RdkSnapshot | None = None

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        b, tp = ["broker"], ["topic", "partition"]
        return [
            GaugeMetricFamily(LIBRDKAFKA_REPLYQ, "librdkafka ops waiting for the application "
                              "to poll them (replyq)."),
            GaugeMetricFamily(LIBRDKAFKA_MSG_CNT, "Messages in librdkafka's queues (msg_cnt)."),
            GaugeMetricFamily(LIBRDKAFKA_BROKER_UP, "1 if librdkafka's connection to the broker "
                              "is UP.", labels=b),
            GaugeMetricFamily(LIBRDKAFKA_BROKER_RTT_AVG_SECONDS, "Broker round-trip time, "
                              "average over the statistics window.", labels=b),
            GaugeMetricFamily(LIBRDKAFKA_BROKER_RTT_P99_SECONDS, "Broker round-trip time, 99th "
                              "percentile over the statistics window.", labels=b),
            GaugeMetricFamily(LIBRDKAFKA_CONSUMER_LAG, "Consumer lag in messages as librdkafka "
                              "sees it (from the committed offset).", labels=tp),
            GaugeMetricFamily(LIBRDKAFKA_FETCHQ_MESSAGES, "Messages fetched and waiting in "
                              "librdkafka's queue for the partition.", labels=tp),
            CounterMetricFamily(LIBRDKAFKA_REBALANCES, "Rebalances librdkafka's group handler "
                                "went through since the consumer started."),
            GaugeMetricFamily(LIBRDKAFKA_REBALANCE_AGE_SECONDS, "Seconds since the last "
                              "rebalance."),
            GaugeMetricFamily(LIBRDKAFKA_ASSIGNMENT_SIZE, "Partitions in the consumer's current "
                              "assignment."),
        ]

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> list[Metric]:
        snap = self.snapshot
        if snap is None:
            return []
        (replyq, msg_cnt, b_up, rtt_avg, rtt_p99, lag, fetchq, reb, reb_age,
         assign) = self._families()
        replyq.add_metric([], snap.replyq)
        msg_cnt.add_metric([], snap.msg_cnt)
        for name, up, avg, p99 in snap.brokers:
            b_up.add_metric([name], 1.0 if up else 0.0)
            rtt_avg.add_metric([name], avg)
            rtt_p99.add_metric([name], p99)
        for topic, pid, plag, fq in snap.partitions:
            if plag is not None:
                lag.add_metric([topic, pid], plag)
            fetchq.add_metric([topic, pid], fq)
        out: list[Metric] = [replyq, msg_cnt, b_up, rtt_avg, rtt_p99, lag, fetchq]
        if snap.rebalance_cnt is not None:
            reb.add_metric([], snap.rebalance_cnt)
            reb_age.add_metric([], snap.rebalance_age_s or 0.0)
            assign.add_metric([], snap.assignment_size or 0.0)
            out += [reb, reb_age, assign]
        return out


class WorkerMetrics:
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

        self._processing = _BatchHistogram(PROCESSING_SECONDS, "Seconds per processor call.",
                                           ["processor"], PROCESSING_BUCKETS)
        self._latency = _BatchHistogram(END_TO_END_LATENCY_SECONDS, "Now minus the event's "
                                        "Kafka timestamp when its batch finished.", [],
                                        LATENCY_BUCKETS)
        self._batch_size = _BatchHistogram(BATCH_SIZE, "Events per batch.", [],
                                           BATCH_SIZE_BUCKETS)
        self._ledger_seconds = _BatchHistogram(LEDGER_OPERATION_SECONDS, "Seconds per ledger "
                                               "operation, by operation.", ["op"], LEDGER_BUCKETS)
        self._partitions = _PartitionCollector(clock)
        self._librdkafka = _LibrdkafkaCollector()
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
            self._librdkafka.snapshot = _parse_librdkafka(stats_json)
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

    @classmethod
    def disabled(cls) -> WorkerMetrics:
        return NULL_METRICS


class NullMetrics(WorkerMetrics):
    """Metrics off: every recording method is a no-op (for the with/without benchmark)."""

    def record_batch(self, stats: BatchStats) -> None:
        pass

    def partitions_assigned(self, tps: Sequence[TopicPartition]) -> None:
        pass

    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None:
        pass

    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None:
        pass

    def record_lag(self, tp: TopicPartition, lag_offsets: int,
                   lag_seconds: float | None) -> None:
        pass

    def record_commit(self, tp: TopicPartition, offset: int) -> None:
        pass

    def record_librdkafka_stats(self, stats_json: str) -> None:
        pass

    def record_ledger_op(self, op: str, seconds: float, error: bool) -> None:
        pass

    def guardrail_tripped(self) -> None:
        pass

    def dlq_write(self, ok: bool, shrunk: int = 0) -> None:
        pass

    def watch_processor_call(self, age: Callable[[], float]) -> None:
        pass

    def set_ledger_up(self, up: bool) -> None:
        pass


NULL_METRICS: WorkerMetrics = NullMetrics()


def sample_names(registry: CollectorRegistry) -> Iterator[str]:
    """Every sample name the registry exposes now (for tests and docs checks)."""
    for family in registry.collect():
        for sample in family.samples:
            yield sample.name
