"""Lag counted up to what can be read (the last stable offset), and a transaction left open
upstream reported as its own condition with the time since it was first seen there."""

from __future__ import annotations

from typing import Any

from worker.engine.offsets import OffsetTracker, Policy
from worker.engine.progress import LagRecorder
from worker.observer import WorkerObserver
from worker.types import TopicPartition

A, B = ("t", 0), ("t", 1)


class Port:
    """The three reads LagRecorder makes of a consumer."""

    def __init__(self) -> None:
        self.marks = {A: (0, 9), B: (0, 4)}
        self.stable = {A: (6, 9), B: (4, 4)}
        self.asked: list[list[tuple[str, int]]] = []

    def watermarks(self, parts: Any, *, cached: bool = False) -> dict[Any, tuple[int, int]]:
        return {tp: self.marks[tp] for tp in parts}

    def stable_offsets(self, parts: Any) -> dict[Any, tuple[int, int]]:
        return {tp: self.stable[tp] for tp in parts if tp in self.stable}

    def committed(self, parts: Any, timeout: float) -> dict[Any, int]:
        self.asked.append(list(parts))
        return {A: 6, B: 4}


class Seen(WorkerObserver):
    def __init__(self) -> None:
        self.lag: dict[TopicPartition, int] = {}
        self.open: dict[TopicPartition, float] = {}

    def record_lag(self, tp: TopicPartition, lag_offsets: int, lag_seconds: float) -> None:
        self.lag[tp] = lag_offsets

    def record_open_transaction(self, tp: TopicPartition, seconds: float) -> None:
        self.open[tp] = seconds


def test_an_open_transaction_is_not_lag_and_is_timed_from_when_it_was_first_seen(
        monkeypatch: Any) -> None:
    now = [1000.0]
    monkeypatch.setattr("worker.engine.progress.time.time", lambda: now[0])
    port, seen, rec = Port(), Seen(), LagRecorder()
    offsets = OffsetTracker(Policy(commit_every=10, commit_interval=5))
    rec.record(port, offsets, {A, B}, seen)  # type: ignore[arg-type]
    # idle since the assignment: where the group stands is asked of the broker, once
    assert port.asked == [[A, B]] and offsets.committed == {A: 6, B: 4}
    assert seen.lag == {TopicPartition(*A): 0, TopicPartition(*B): 0}
    assert seen.open == {TopicPartition(*A): 0.0}
    now[0] += 30
    rec.record(port, offsets, {A, B}, seen)  # type: ignore[arg-type]
    assert port.asked == [[A, B]]
    assert seen.open[TopicPartition(*A)] == 30.0  # the same LSO: the same transaction
    port.stable[A] = (9, 12)  # it committed; another one is open further on
    port.marks[A] = (0, 12)
    now[0] += 5
    rec.record(port, offsets, {A, B}, seen)  # type: ignore[arg-type]
    assert seen.open[TopicPartition(*A)] == 0.0 and seen.lag[TopicPartition(*A)] == 3
    port.stable[A] = (12, 12)
    rec.record(port, offsets, {A, B}, seen)  # type: ignore[arg-type]
    assert seen.open[TopicPartition(*A)] == 0.0 and seen.lag[TopicPartition(*A)] == 6
