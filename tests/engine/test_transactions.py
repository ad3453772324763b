"""Exactly-once mode in the engine, on the in-memory broker with a recording transaction port: one
transaction per batch, begun before the batch is handed over and committed with the offsets past
it and the consumer's group metadata, in the order batches are read; the consumer never commits
by itself; a cancelled batch or a failed commit aborts and the batch is read again. The real
broker's side is tests/integration/test_exactly_once_outputs.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.engine.helpers import Running, wait_for
from worker.engine.inmemory import InMemoryBroker
from worker.engine.loop import Engine, EngineConfig
from worker.engine.transactions import TransactionFailed
from worker.errors import ConfigError
from worker.types import TP, BatchResult, Message

pytestmark = pytest.mark.timeout(60)


class Port:
    """Records each call; fails the commits it is told to."""

    transaction_timeout = 60.0

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_commits = 0
        self.lock = threading.Lock()

    def begin(self) -> None:
        with self.lock:
            self.calls.append(("begin", None))

    def commit(self, offsets: Sequence[tuple[TP, int]], group_metadata: Any) -> None:
        with self.lock:
            if self.fail_commits:
                self.fail_commits -= 1
                self.calls.append(("failed", sorted(offsets)))
                raise TransactionFailed("fenced by the group", fenced=False)
            self.calls.append(("commit", (sorted(offsets), group_metadata)))

    def abort(self) -> None:
        with self.lock:
            self.calls.append(("abort", None))

    def commits(self) -> list[list[tuple[TP, int]]]:
        with self.lock:
            return [c[1][0] for c in self.calls if c[0] == "commit"]


class Handler:
    window = None

    def __init__(self, cancel_first: bool = False) -> None:
        self.seen: list[tuple[int, int]] = []
        self._cancel_first = cancel_first

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        if self._cancel_first:
            self._cancel_first = False
            return BatchResult(False)
        self.seen.extend((m.partition() or 0, m.offset() or 0) for m in messages)
        return BatchResult(True)


def run_engine(broker: InMemoryBroker, topic: str, handler: Any, port: Port,
               until: Callable[[], bool], interval: float = 0.0) -> None:
    engine = Engine(broker.consumer("g"), handler,
                    EngineConfig(topics=[topic], batch_size=5, poll_timeout=0.02,
                                 commit_interval=0.05, install_signals=False,
                                 transaction_interval=interval),
                    transactions=port)
    running = Running(engine)
    try:
        wait_for(until, 20, "the engine to get through the topic")
    finally:
        assert running.stop() == 0


def test_each_batch_commits_its_offsets_in_its_transaction_and_the_consumer_never_commits(
        ) -> None:
    broker = InMemoryBroker()
    broker.create_topic("t", 2)
    for i in range(20):
        broker.produce("t", b"x", partition=i % 2)
    port, handler = Port(), Handler()
    run_engine(broker, "t", handler, port, lambda: len(handler.seen) == 20)
    commits = port.commits()
    per_partition: dict[TP, list[int]] = {}
    for offsets in commits:
        for tp, offset in offsets:
            per_partition.setdefault(tp, []).append(offset)
    # in the order batches were read: each partition's committed offsets only go up, to 10
    assert {tp: offs[-1] for tp, offs in per_partition.items()} == {("t", 0): 10, ("t", 1): 10}
    assert all(offs == sorted(set(offs)) for offs in per_partition.values())
    names = [c[0] for c in port.calls]
    # begin, commit, begin, commit... (a begin may end the run when the worker stops first)
    assert names[: 2 * len(commits)] == ["begin", "commit"] * len(commits)
    metadata = {c[1][1] for c in port.calls if c[0] == "commit"}
    assert len(metadata) == 1 and None not in metadata
    # the consumer committed nothing by itself: the group's offsets are untouched
    assert broker.committed("g", ("t", 0)) < 0 and broker.committed("g", ("t", 1)) < 0


def test_a_cancelled_batch_aborts_and_a_failed_commit_aborts_and_both_are_read_again() -> None:
    broker = InMemoryBroker()
    broker.create_topic("t", 1)
    for _ in range(10):
        broker.produce("t", b"x")
    port, handler = Port(), Handler(cancel_first=True)
    port.fail_commits = 1
    run_engine(broker, "t", handler, port,
               lambda: port.commits() and port.commits()[-1] == [(("t", 0), 10)])
    names = [c[0] for c in port.calls]
    assert names[:2] == ["begin", "abort"]          # the cancelled batch
    # a failed commit was aborted by the port itself (its contract); the engine begins anew
    assert "failed" in names and names[names.index("failed") + 1] == "begin"
    offsets = [o for _, o in handler.seen]
    # every offset handled; the batch whose commit failed was handled again from its start
    assert sorted(set(offsets)) == list(range(10))
    failed = next(c[1] for c in port.calls if c[0] == "failed")
    again = failed[0][1] - 5
    assert offsets.count(again) == 2


def test_overlapping_batches_are_refused_in_exactly_once_mode() -> None:
    class Windowed(Handler):
        window = object()

    with pytest.raises(ConfigError, match="one batch at a time"):
        Engine(InMemoryBroker().consumer("g"), Windowed(), EngineConfig(topics=["t"]),
               transactions=Port())


class CancelNth(Handler):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.calls = 0
        self._n = n

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        self.calls += 1
        if self.calls == self._n:
            return BatchResult(False)
        return super().handle(messages, cancelled)


def test_a_transaction_spans_batches_and_an_abort_reads_all_of_them_again() -> None:
    broker = InMemoryBroker()
    broker.create_topic("t", 1)
    for _ in range(15):
        broker.produce("t", b"x")
    port, handler = Port(), CancelNth(3)
    run_engine(broker, "t", handler, port,
               lambda: bool(port.commits()) and port.commits()[-1] == [(("t", 0), 15)],
               interval=30.0)
    names = [c[0] for c in port.calls]
    # batches 1 and 2 (offsets 0-9) ran in one transaction, batch 3 was cancelled: the whole
    # transaction aborted and was read again from offset 0, then committed once when idle
    assert names[:2] == ["begin", "abort"]
    assert names.count("commit") == 1 and names[-1] == "commit"
    offsets = [o for _, o in handler.seen]
    assert offsets == list(range(10)) + list(range(15))


def test_after_a_failed_commit_nothing_past_the_rewind_is_committed_first() -> None:
    """A commit fails at the end of a loop turn; the consumer has fetched on meanwhile. What
    it fetched past the rewind point must not run (and commit) before the events it skipped:
    the committed offsets only ever go up, each one past events all handled."""
    broker = InMemoryBroker()
    broker.create_topic("t", 1)
    for _ in range(20):
        broker.produce("t", b"x")
    port, handler = Port(), Handler()
    real_commit = port.commit
    calls = [0]

    def second_fails(offsets: Sequence[tuple[TP, int]], metadata: Any) -> None:
        calls[0] += 1
        if calls[0] == 2:
            port.fail_commits = 1
        real_commit(offsets, metadata)

    port.commit = second_fails  # type: ignore[method-assign]
    run_engine(broker, "t", handler, port,
               lambda: bool(port.commits()) and port.commits()[-1] == [(("t", 0), 20)])
    committed = [offsets[0][1] for offsets in port.commits()]
    assert committed == sorted(committed) and committed[-1] == 20
    seen = [o for _, o in handler.seen]
    assert set(range(20)) <= set(seen)


def test_a_transaction_past_its_timeout_is_aborted_read_again_and_said_so() -> None:
    """The broker aborts a transaction open longer than transaction.timeout.ms: the commit
    fails, the batches are read again, and one error line says what to change."""
    import structlog

    broker = InMemoryBroker()
    broker.create_topic("t", 1)
    for _ in range(5):
        broker.produce("t", b"x")
    port, handler = Port(), Handler()
    port.transaction_timeout = 0.0  # every transaction is older than that when it commits
    port.fail_commits = 1
    with structlog.testing.capture_logs() as logs:
        run_engine(broker, "t", handler, port,
                   lambda: bool(port.commits()) and port.commits()[-1] == [(("t", 0), 5)])
    said = [e for e in logs if "longer than the transaction timeout" in e["event"]]
    assert len(said) == 1 and said[0]["log_level"] == "error"
    assert "--batch-size" in said[0]["event"]
    assert [o for _, o in handler.seen] == list(range(5)) * 2
