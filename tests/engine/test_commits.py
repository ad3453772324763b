"""Commits without a broker: one asynchronous commit in flight at a time, a failed one sent
again, a synchronous one waiting for the unanswered asynchronous one. The same on the real
broker: tests/engine/test_engine_kafka.py and, under broker kills, tests/cluster/."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.engine.test_offset_tracker import Clock
from worker.engine.commits import ASYNC_COMMIT_PATIENCE_S, Commits
from worker.engine.consumer_port import TP, CommitFailed
from worker.engine.inmemory import InMemoryBroker
from worker.engine.lifecycle import RunCounts
from worker.engine.offsets import OffsetTracker, Policy
from worker.observer import WorkerObserver

A = ("t", 0)


class RecordingPort:
    """Just the port's commit: records what was sent, answers nothing by itself."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[tuple[TP, int]] | None, bool]] = []
        self.refuse = False

    def commit(self, offsets: Sequence[tuple[TP, int]] | None = None, *,
               asynchronous: bool) -> list[tuple[TP, int]]:
        if self.refuse:
            raise CommitFailed("no coordinator")
        self.sent.append((None if offsets is None else list(offsets), asynchronous))
        return []


def commits(clock: Clock) -> tuple[Commits, OffsetTracker, RecordingPort]:
    tracker = OffsetTracker(Policy(commit_every=1, commit_interval=1.0), clock=clock)
    port = RecordingPort()
    return Commits(port, tracker, WorkerObserver(), RunCounts(), clock=clock), tracker, port  # type: ignore[arg-type]


def test_the_next_asynchronous_commit_waits_for_the_answer_to_the_last() -> None:
    clock = Clock()
    c, tracker, port = commits(clock)
    tracker.finished({A: 9}, {A: 0}, 10, assigned={A})
    c.send(asynchronous=True)
    assert len(port.sent) == 1 and c.awaiting_answer
    tracker.finished({A: 19}, {A: 0}, 10, assigned={A})
    assert tracker.commit_due()
    c.send(asynchronous=True)
    assert len(port.sent) == 1  # unanswered: nothing more goes out
    c.confirmed([(A, 10)], asynchronous=True)
    assert not c.awaiting_answer and tracker.committed[A] == 10
    c.send(asynchronous=True)  # what was stored meanwhile goes in one commit
    assert len(port.sent) == 2
    c.confirmed([(A, 20)], asynchronous=True)
    assert tracker.committed[A] == 20 and not tracker.commit_due()


def test_a_synchronous_answer_does_not_count_as_the_asynchronous_one() -> None:
    clock = Clock()
    c, tracker, _port = commits(clock)
    tracker.finished({A: 9}, {A: 0}, 10, assigned={A})
    c.send(asynchronous=True)
    c.confirmed([(A, 10)], asynchronous=False)
    assert c.awaiting_answer


def test_a_failed_asynchronous_commit_is_sent_again_with_no_new_event() -> None:
    clock = Clock()
    c, tracker, port = commits(clock)
    tracker.finished({A: 9}, {A: 0}, 10, assigned={A})
    c.send(asynchronous=True)
    assert not tracker.commit_due()
    c.failed("Broker: Not coordinator")
    assert not c.awaiting_answer
    clock.now += 1.0
    assert tracker.commit_due()
    c.send(asynchronous=True)
    assert len(port.sent) == 2


def test_a_commit_the_port_refuses_at_once_leaves_nothing_in_flight() -> None:
    clock = Clock()
    c, tracker, port = commits(clock)
    tracker.finished({A: 9}, {A: 0}, 10, assigned={A})
    port.refuse = True
    c.send(asynchronous=True)
    assert not c.awaiting_answer
    with pytest.raises(CommitFailed):
        c.send(asynchronous=False)


def test_an_answer_that_never_comes_holds_commits_back_only_for_a_while() -> None:
    clock = Clock()
    c, tracker, port = commits(clock)
    tracker.finished({A: 9}, {A: 0}, 10, assigned={A})
    c.send(asynchronous=True)
    tracker.finished({A: 19}, {A: 0}, 10, assigned={A})
    clock.now += ASYNC_COMMIT_PATIENCE_S - 1
    c.send(asynchronous=True)
    assert len(port.sent) == 1
    clock.now += 1
    c.send(asynchronous=True)
    assert len(port.sent) == 2


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_commit(self, committed: list[tuple[TP, int]], *, asynchronous: bool) -> None:
        self.events.append(("async" if asynchronous else "sync", committed))

    def on_commit_failed(self, error: str) -> None:
        self.events.append(("failed", error))

    def on_assign(self, partitions: list[TP]) -> None:
        pass

    def on_revoke(self, partitions: list[TP]) -> None:
        pass

    def on_lost(self, partitions: list[TP]) -> None:
        pass

    def on_error(self, error: object) -> None:
        pass


def test_the_in_memory_port_answers_each_asynchronous_commit_once() -> None:
    """Like librdkafka's offset_commit_cb: one answer per asynchronous commit, at a later call,
    also when there was nothing to commit or the group moved on."""
    broker = InMemoryBroker()
    broker.create_topic("t", 1)
    consumer = broker.consumer("g")
    listener = Listener()
    consumer.open(listener)  # type: ignore[arg-type]
    consumer.subscribe(["t"])
    consumer.consume(1, 0.01)
    assert consumer.commit(asynchronous=True) == []  # nothing stored
    consumer.store([(A, 5)])
    assert consumer.commit(asynchronous=True) == []
    assert listener.events == []
    consumer.consume(1, 0.01)
    assert listener.events == [("async", []), ("async", [(A, 5)])]
    assert consumer.commit([(A, 5)], asynchronous=False) == [(A, 5)]
    assert listener.events[-1] == ("sync", [(A, 5)])
    other = broker.consumer("g")
    other.open(Listener())  # type: ignore[arg-type]
    other.subscribe(["t"])
    broker.expire(consumer)
    other.consume(1, 0.01)
    consumer.commit([(A, 6)], asynchronous=True)
    consumer.poll()
    assert listener.events[-1][0] == "failed"
