"""`BatchHistogram`: a Prometheus histogram fed a whole batch of values at a time.

A batch's values are sorted once (C speed) and each bucket's cumulative count is one `bisect`
into the sorted list: O(n log n) in C plus O(buckets) in Python per batch, instead of one locked
`observe()` per value as prometheus_client's own Histogram would take.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

from prometheus_client.core import HistogramMetricFamily, Metric


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
