"""Prometheus collectors of the worker's own state, computed at scrape time (registered by
worker.observability.metrics):

- `PartitionCollector`: lag, committed offset and commit age per partition ("seconds since the
  committed offset last advanced" is `now - when it last advanced`, so it keeps growing while
  nothing commits; series of revoked partitions disappear instead of going stale);
- `EffectsCollector`: the async effects (every series from the start, at 0 without any);
- `DestinationsCollector`: each destination's circuit breaker (worker.processing.circuit).

librdkafka's statistics have their own module (worker.observability.librdkafka_stats), and so
does the histogram fed a batch at a time (worker.observability.batch_histogram).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from worker.observability.metric_names import (
    CIRCUIT_STATES,
    COMMIT_AGE_SECONDS,
    COMMITTED_OFFSET,
    CONSUMER_LAG_OFFSETS,
    CONSUMER_LAG_SECONDS,
    DESTINATION_CALLS_REFUSED,
    DESTINATION_CONCURRENCY_LIMIT,
    DESTINATION_DOWN_SECONDS,
    DESTINATION_EVENTS_PARKED,
    DESTINATION_OPENED,
    DESTINATION_PARTITIONS_HELD,
    DESTINATION_RATE_LIMIT,
    DESTINATION_STATE,
    EFFECT_OLDEST_AGE_SECONDS,
    EFFECTS_IN_FLIGHT,
    EFFECTS_KEYS_ACTIVE,
    EFFECTS_MAX_IN_FLIGHT,
    EFFECTS_QUEUED,
    EFFECTS_SLOTS_FREE,
    EFFECTS_WAITING,
    OPEN_TRANSACTION_SECONDS,
)
from worker.types import TopicPartition
from worker.vocabulary import EffectWait


class ScrapeTimeCollector:
    """A collector whose metric families are declared once, in `_families()`: `collect()` fills
    a fresh set of them, `describe()` shows them empty (what the registry checks the names by
    when the collector is registered)."""

    def _families(self) -> Sequence[Metric]:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return list(self._families())


@dataclass(slots=True)
class _PartState:
    advanced_at: float
    committed: int = -1
    lag_offsets: int | None = None
    lag_seconds: float | None = None
    open_transaction_s: float = 0.0


class PartitionCollector(ScrapeTimeCollector):
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


class Effects(Protocol):
    """What worker.processing.effects.ConcurrentEffects shows (read at scrape time)."""

    max_in_flight: int

    def in_flight_by_processor(self) -> dict[str, int]: ...
    def queued_by_partition(self) -> dict[tuple[str, int], int]: ...
    def oldest_age(self) -> float: ...
    def keys_active(self) -> int: ...
    def waiting_by_reason(self) -> dict[EffectWait, int]: ...
    def free_slots(self) -> int: ...


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

    def keys_active(self) -> int:
        return 0

    def waiting_by_reason(self) -> dict[EffectWait, int]:
        return {}

    def free_slots(self) -> int:
        return self.max_in_flight


class EffectsCollector(ScrapeTimeCollector):
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
            GaugeMetricFamily(EFFECTS_WAITING, "Async effects not started, by what holds them "
                              "back: key_order (an earlier effect of their key), slot (every "
                              "slot of --max-in-flight is taken: more in flight would help), "
                              "destination (its circuit, pace or adaptive limit: the "
                              "destination is the limit).", labels=["reason"]),
            GaugeMetricFamily(EFFECTS_KEYS_ACTIVE, "Ordering keys with an async effect running "
                              "or waiting."),
            GaugeMetricFamily(EFFECTS_SLOTS_FREE, "Slots of --max-in-flight no effect holds "
                              "(idle capacity)."),
        ]

    def collect(self) -> list[Metric]:
        in_flight, queued, oldest, bound, waiting, keys, free = self._families()
        by_reason = self.effects.waiting_by_reason()
        for reason in EffectWait:
            waiting.add_metric([reason.value], by_reason.get(reason, 0))
        keys.add_metric([], self.effects.keys_active())
        free.add_metric([], self.effects.free_slots())
        for proc, n in sorted(self.effects.in_flight_by_processor().items()) or [("", 0)]:
            in_flight.add_metric([proc], n)
        queued_now = [([t, str(p)], n) for (t, p), n in
                      sorted(self.effects.queued_by_partition().items())]
        for labels, n in queued_now or [(["", ""], 0)]:
            queued.add_metric(labels, n)
        oldest.add_metric([], self.effects.oldest_age())
        bound.add_metric([], self.effects.max_in_flight)
        return [in_flight, queued, oldest, bound, waiting, keys, free]


class Destination(Protocol):
    """What a worker.processing.circuit.Circuit shows (read at scrape time)."""

    name: str
    refused: int
    opened: int
    parked: int
    held: int

    @property
    def state(self) -> str: ...  # read-only here: a Circuit's is a CircuitState (a str)

    def down_seconds(self) -> float: ...

    def current_limit(self) -> int: ...

    def current_pace(self) -> float: ...


class DestinationsCollector(ScrapeTimeCollector):
    """Each destination's circuit breaker: its state (one series per state, 1 for the current
    one), how long it has been down, its concurrency limit and pace now, the calls it held
    back, the times it opened, the events parked for it and the partitions held for it
    (worker.processing.parking)."""

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
                              "flight at once at most, now: adaptive (AIMD) between 1 and its "
                              "processor's max_concurrency, else --max-in-flight; 1 for a sync "
                              "processor.", labels=by),
            GaugeMetricFamily(DESTINATION_RATE_LIMIT, "Calls per second the worker paces "
                              "the destination to, after it refused calls (429); 0: not "
                              "paced.", labels=by),
            CounterMetricFamily(DESTINATION_CALLS_REFUSED, "Calls the destination's circuit "
                                "held back while it was unavailable (each once).", labels=by),
            CounterMetricFamily(DESTINATION_OPENED, "Times the destination's circuit opened "
                                "(an outage, or a failed probe during one).", labels=by),
            CounterMetricFamily(DESTINATION_EVENTS_PARKED, "Effects parked while the "
                                "destination was down past --park-after (read again later; "
                                "each time one parks).", labels=by),
            GaugeMetricFamily(DESTINATION_PARTITIONS_HELD, "Partitions whose offset is held "
                              "at an event parked for the destination, now.", labels=by),
        ]

    def collect(self) -> list[Metric]:
        state, down, limit, pace, refused, opened, parked, held = self._families()
        for d in sorted(self.destinations(), key=lambda d: d.name):
            for s in CIRCUIT_STATES:
                state.add_metric([d.name, s], 1.0 if d.state == s else 0.0)
            down.add_metric([d.name], d.down_seconds())
            limit.add_metric([d.name], d.current_limit())
            pace.add_metric([d.name], d.current_pace())
            refused.add_metric([d.name], d.refused)
            opened.add_metric([d.name], d.opened)
            parked.add_metric([d.name], d.parked)
            held.add_metric([d.name], d.held)
        return [state, down, limit, pace, refused, opened, parked, held]
