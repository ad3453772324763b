"""Custom Prometheus collectors of worker.observability.metrics, computed at scrape time:

- `BatchHistogram`: a batch's values are sorted once (C speed) and each bucket's cumulative
  count is one `bisect` into the sorted list: O(n log n) in C plus O(buckets) in Python per
  batch instead of one locked `observe()` per value;
- `PartitionCollector`: lag, committed offset and commit age per partition ("seconds since the
  committed offset last advanced" is `now - when it last advanced`, so it keeps growing while
  nothing commits; series of revoked partitions disappear instead of going stale);
- `LibrdkafkaCollector`: renders the last librdkafka statistics snapshot;
- `EffectsCollector`: the async effects (every series from the start, at 0 without any);
- `DestinationsCollector`: each destination's circuit breaker (worker.processing.circuit).
"""

from __future__ import annotations

import json
import math
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from worker.observability.metric_names import (
    CIRCUIT_STATES,
    COMMIT_AGE_SECONDS,
    COMMITTED_OFFSET,
    CONSUMER_LAG_OFFSETS,
    CONSUMER_LAG_SECONDS,
    DESTINATION_CALLS_REFUSED,
    DESTINATION_CONCURRENCY_LIMIT,
    DESTINATION_DOWN_SECONDS,
    DESTINATION_OPENED,
    DESTINATION_STATE,
    EFFECT_OLDEST_AGE_SECONDS,
    EFFECTS_IN_FLIGHT,
    EFFECTS_MAX_IN_FLIGHT,
    EFFECTS_QUEUED,
    LIBRDKAFKA_ASSIGNMENT_SIZE,
    LIBRDKAFKA_BROKER_RTT_AVG_SECONDS,
    LIBRDKAFKA_BROKER_RTT_P99_SECONDS,
    LIBRDKAFKA_BROKER_UP,
    LIBRDKAFKA_CONSUMER_LAG,
    LIBRDKAFKA_FETCHQ_MESSAGES,
    LIBRDKAFKA_MSG_CNT,
    LIBRDKAFKA_REBALANCE_AGE_SECONDS,
    LIBRDKAFKA_REBALANCES,
    LIBRDKAFKA_REPLYQ,
    OPEN_TRANSACTION_SECONDS,
)
from worker.types import TopicPartition


class _HistState:
    __slots__ = ("count", "cumulative", "total")

    def __init__(self, n_buckets: int) -> None:
        self.cumulative = [0] * n_buckets
        self.count = 0
        self.total = 0.0


class BatchHistogram:
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
    open_transaction_s: float = 0.0


class PartitionCollector:
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
                                 GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["topic", "partition"]
        return (
            GaugeMetricFamily(CONSUMER_LAG_OFFSETS, "Messages between the worker's position "
                              "and the end it can read (the last stable offset under "
                              "read_committed).", labels=labels),
            GaugeMetricFamily(CONSUMER_LAG_SECONDS, "Age of the oldest unprocessed message of "
                              "the partition (0 when caught up).", labels=labels),
            GaugeMetricFamily(COMMITTED_OFFSET, "Last offset committed for the partition.",
                              labels=labels),
            GaugeMetricFamily(COMMIT_AGE_SECONDS, "Seconds since the committed offset of the "
                              "partition last advanced (or since it was assigned).",
                              labels=labels),
            GaugeMetricFamily(OPEN_TRANSACTION_SECONDS, "Seconds a transaction left open "
                              "upstream has held the partition's last stable offset below its "
                              "high watermark (0: none).", labels=labels),
        )

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> list[Metric]:
        lag, lag_s, committed, age, open_txn = self._families()
        now = self._clock()
        with self._lock:
            items = [(tp, st.lag_offsets, st.lag_seconds, st.committed, st.advanced_at,
                      st.open_transaction_s) for tp, st in self.parts.items()]
        for tp, lag_offsets, lag_seconds, offset, advanced_at, open_s in items:
            labels = [tp.topic, str(tp.partition)]
            if lag_offsets is not None:
                lag.add_metric(labels, float(lag_offsets))
            if lag_seconds is not None:
                lag_s.add_metric(labels, lag_seconds)
            if offset >= 0:
                committed.add_metric(labels, float(offset))
            age.add_metric(labels, max(0.0, now - advanced_at))
            open_txn.add_metric(labels, open_s)
        return [lag, lag_s, committed, age, open_txn]


@dataclass(slots=True)
class _RdkSnapshot:
    replyq: float = 0.0
    msg_cnt: float = 0.0
    brokers: list[tuple[str, bool, float, float]] = field(default_factory=list)
    partitions: list[tuple[str, str, float | None, float]] = field(default_factory=list)
    rebalance_cnt: float | None = None
    rebalance_age_s: float | None = None
    assignment_size: float | None = None


def parse_librdkafka(stats_json: str) -> _RdkSnapshot:
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


class LibrdkafkaCollector:
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


class Effects(Protocol):
    """What worker.processing.effects.ConcurrentEffects shows (read at scrape time)."""

    max_in_flight: int

    def in_flight_by_processor(self) -> dict[str, int]: ...
    def queued_by_partition(self) -> dict[tuple[str, int], int]: ...
    def oldest_age(self) -> float: ...


class NoEffects:
    """The effects of a worker without async processors: none, at 0 (the series exist all the
    same, so a dashboard shows 0 instead of "No data")."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight

    def in_flight_by_processor(self) -> dict[str, int]:
        return {}

    def queued_by_partition(self) -> dict[tuple[str, int], int]:
        return {}

    def oldest_age(self) -> float:
        return 0.0


class EffectsCollector:
    """Async processors' effects: in flight per processor, waiting per partition, the oldest
    one's age, and the bound. The labelled series are exported at 0 with empty labels until
    there is a first one (a worker with sync processors only shows 0 for ever)."""

    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    def _families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(EFFECTS_IN_FLIGHT, "Async processor calls in flight, by "
                              "processor.", labels=["processor"]),
            GaugeMetricFamily(EFFECTS_QUEUED, "Async effects of the running batch not started "
                              "yet (their key is busy, or every slot is), by partition.",
                              labels=["topic", "partition"]),
            GaugeMetricFamily(EFFECT_OLDEST_AGE_SECONDS, "How long the oldest async call in "
                              "flight has been running (0 when none is)."),
            GaugeMetricFamily(EFFECTS_MAX_IN_FLIGHT, "The bound on async calls in flight "
                              "(--max-in-flight)."),
        ]

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> list[Metric]:
        in_flight, queued, oldest, bound = self._families()
        for proc, n in sorted(self.effects.in_flight_by_processor().items()) or [("", 0)]:
            in_flight.add_metric([proc], n)
        queued_now = [([t, str(p)], n) for (t, p), n in
                      sorted(self.effects.queued_by_partition().items())]
        for labels, n in queued_now or [(["", ""], 0)]:
            queued.add_metric(labels, n)
        oldest.add_metric([], self.effects.oldest_age())
        bound.add_metric([], self.effects.max_in_flight)
        return [in_flight, queued, oldest, bound]


class Destination(Protocol):
    """What a worker.processing.circuit.Circuit shows (read at scrape time)."""

    name: str
    refused: int
    opened: int
    concurrency_limit: int

    @property
    def state(self) -> str: ...  # read-only here: a Circuit's is a CircuitState (a str)

    def down_seconds(self) -> float: ...


class DestinationsCollector:
    """Each destination's circuit breaker: its state (one series per state, 1 for the current
    one), how long it has been down, its concurrency limit, the calls it held back and the
    times it opened."""

    def __init__(self, destinations: Callable[[], Iterable[Destination]]) -> None:
        self.destinations = destinations

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        by = ["destination"]
        return [
            GaugeMetricFamily(DESTINATION_STATE, "1 for the state a destination's circuit "
                              "breaker is in (closed, open: no calls, half_open: probing), 0 "
                              "for the others.", labels=["destination", "state"]),
            GaugeMetricFamily(DESTINATION_DOWN_SECONDS, "Seconds since the destination's "
                              "circuit left closed (0 while closed).", labels=by),
            GaugeMetricFamily(DESTINATION_CONCURRENCY_LIMIT, "Calls of the destination in "
                              "flight at once at most (its processor's max_concurrency, else "
                              "--max-in-flight; 1 for a sync processor).", labels=by),
            CounterMetricFamily(DESTINATION_CALLS_REFUSED, "Calls the destination's circuit "
                                "held back while it was unavailable (each once).", labels=by),
            CounterMetricFamily(DESTINATION_OPENED, "Times the destination's circuit opened "
                                "(an outage, or a failed probe during one).", labels=by),
        ]

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> list[Metric]:
        state, down, limit, refused, opened = self._families()
        for d in sorted(self.destinations(), key=lambda d: d.name):
            for s in CIRCUIT_STATES:
                state.add_metric([d.name, s], 1.0 if d.state == s else 0.0)
            down.add_metric([d.name], d.down_seconds())
            limit.add_metric([d.name], d.concurrency_limit)
            refused.add_metric([d.name], d.refused)
            opened.add_metric([d.name], d.opened)
        return [state, down, limit, refused, opened]
