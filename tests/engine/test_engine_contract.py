"""The engine's contract, run on the in-memory broker (worker.engine.inmemory: no Kafka, fast) and
on a real broker, as the ledger contract runs on every store: offsets committed only past
finished batches, drain, a cancelled batch read again, revoke (wait, or cancel and let go),
lost partitions never committed, the guardrail, and graceful shutdown (finish the batch, or
cancel it at the shutdown bound).

The real-broker side of the lost scenario freezes a private broker (tests/secure_kafka.py)
with SIGSTOP for longer than the session timeout; the in-memory broker expires the member."""

from __future__ import annotations

import functools
import itertools
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.engine.helpers import (
    Running,
    Txn,
    committed,
    create_topic,
    end_offsets,
    event_json,
    produce,
    produce_transactions,
    wait_for,
)
from worker.engine.finishing import LETTERS_AHEAD_BATCHES
from worker.engine.inmemory import InMemoryBroker, InMemoryConsumer
from worker.engine.lifecycle import EXIT_GUARDRAIL, EXIT_OK
from worker.engine.loop import Engine, EngineConfig
from worker.kafka.config import INTERLEAVED_FETCH_BYTES, build_consumer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.observer import WorkerObserver
from worker.types import BatchResult, DeadLetter, Message, TopicPartition

pytestmark = pytest.mark.timeout(120)

SEQ = itertools.count()
NONE = -1001


# -- the two brokers -------------------------------------------------------------------------
class Backend:
    """A broker the engine runs against."""

    name = ""

    def topic(self, partitions: int) -> str: ...
    def produce(self, topic: str, records: Sequence[tuple[int, bytes]]) -> None: ...
    def produce_transactions(self, topic: str, txns: Sequence[Txn]) -> set[tuple[int, int]]:
        """Committed and aborted transactions, each closed by a marker; returns the
        (partition, offset) of the committed records."""
        raise NotImplementedError

    def end_offsets(self, topic: str, partitions: int) -> dict[int, int]: ...
    def consumer(self, group: str, overrides: dict[str, str]) -> Any: ...
    def interleaved(self, engine: Engine) -> bool:
        """Whether the engine asked its consumer for partitions interleaved."""
        raise NotImplementedError

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int]: ...
    def lose(self, engine: Engine, until: Callable[[], bool]) -> None:
        """Make the group declare `engine`'s assignment lost; return once `until()`."""

    def engine(self, group: str, topic: str, handler: Any, *, observer: WorkerObserver,
               overrides: dict[str, str] | None = None, **cfg: Any) -> Engine:
        cfg.setdefault("poll_timeout", 0.05)
        cfg.setdefault("commit_interval", 0.2)
        cfg.setdefault("install_signals", False)
        return Engine(self.consumer(group, overrides or {}), handler,
                      EngineConfig(topics=[topic], **cfg), observers=[observer])


class Memory(Backend):
    name = "memory"

    def __init__(self) -> None:
        self.broker = InMemoryBroker()
        self.members: dict[int, InMemoryConsumer] = {}

    def topic(self, partitions: int) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        self.broker.create_topic(name, partitions)
        return name

    def produce(self, topic: str, records: Sequence[tuple[int, bytes]]) -> None:
        for partition, value in records:
            self.broker.produce(topic, value, partition=partition)

    def produce_transactions(self, topic: str, txns: Sequence[Txn]) -> set[tuple[int, int]]:
        kept: set[tuple[int, int]] = set()
        for partition, count, commit in txns:
            if commit:
                kept.update((partition, self.broker.produce(topic, event_json(i),
                                                            partition=partition))
                            for i in range(count))
                self.broker.skip(topic, partition)  # the commit marker
            else:
                self.broker.skip(topic, partition, count + 1)  # aborted records + marker
        return kept

    def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        return dict(enumerate(self.broker.end_offsets(topic)))

    def consumer(self, group: str, overrides: dict[str, str]) -> Any:
        return self.broker.consumer(group)

    def interleaved(self, engine: Engine) -> bool:
        return bool(engine._consumer.interleaved)  # type: ignore[attr-defined]

    def engine(self, group: str, topic: str, handler: Any, **kw: Any) -> Engine:
        engine = super().engine(group, topic, handler, **kw)
        self.members[id(engine)] = engine._consumer  # type: ignore[assignment]
        return engine

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int]:
        return {p: self.broker.committed(group, (topic, p)) for p in range(partitions)}

    def lose(self, engine: Engine, until: Callable[[], bool]) -> None:
        self.broker.expire(self.members[id(engine)])
        wait_for(until, 10, "the assignment declared lost")


class Kafka(Backend):
    name = "kafka"

    def __init__(self, bootstrap: str, pid: int | None = None) -> None:
        self.bootstrap = bootstrap
        self.pid = pid

    def topic(self, partitions: int) -> str:
        name = f"contract-{uuid.uuid4().hex[:10]}"
        create_topic(self.bootstrap, name, partitions)
        return name

    def produce(self, topic: str, records: Sequence[tuple[int, bytes]]) -> None:
        produce(self.bootstrap, topic, [(p, None, v) for p, v in records])

    def produce_transactions(self, topic: str, txns: Sequence[Txn]) -> set[tuple[int, int]]:
        return produce_transactions(self.bootstrap, topic, txns, event_json)

    def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        return end_offsets(self.bootstrap, topic, partitions)

    def interleaved(self, engine: Engine) -> bool:
        fetch = engine._consumer.settings().get("max.partition.fetch.bytes")
        return fetch == INTERLEAVED_FETCH_BYTES

    def consumer(self, group: str, overrides: dict[str, str]) -> Any:
        return ConfluentConsumer(build_consumer_config(
            self.bootstrap, group, {"heartbeat.interval.ms": "300", **overrides}))

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int]:
        return committed(self.bootstrap, group, topic, partitions)

    def lose(self, engine: Engine, until: Callable[[], bool]) -> None:
        assert self.pid is not None, "the lost scenario needs the private broker"
        os.kill(self.pid, signal.SIGSTOP)
        try:
            wait_for(until, 30, "the assignment declared lost")
        finally:
            os.kill(self.pid, signal.SIGCONT)


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Memory()
    return Kafka(request.getfixturevalue("kafka_bootstrap"))


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def freezable(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return Memory()
    broker = request.getfixturevalue("private_kafka")
    return Kafka(broker.plain_bootstrap, broker.pid)


# -- what the tests watch ----------------------------------------------------------------------
class Handler:
    """Records which (partition, offset) each batch started and completed; `slow` seconds per
    event; `hold` partitions block a batch until released or cancelled; `cancel_first` returns
    the first batch as cancelled; `dead` dead-letters every event."""

    def __init__(self, slow: float = 0.0, cancel_first: bool = False,
                 dead: bool = False, overlap: bool = False) -> None:
        self.window: Handler | None = None
        if overlap:  # its own BatchWindow: batches handed over with submit(), several at once
            self.window = self
            self.max_events_in_flight = 40
            self.max_pending = 30
            self.running = 0
            self._pool = ThreadPoolExecutor(max_workers=8)
        self.lock = threading.Lock()
        self.slow, self.cancel_first, self.dead = slow, cancel_first, dead
        self.hold: set[int] = set()
        self.release = threading.Event()
        self.started: list[list[tuple[int, int]]] = []
        self.completed: list[tuple[int, int]] = []
        self.touched: list[tuple[int, int, int]] = []  # (seq, partition, offset)
        self.cancelled = 0

    def handle(self, messages: Sequence[Message], cancelled: Callable[[], bool]) -> BatchResult:
        offsets = [(m.partition() or 0, m.offset() or 0) for m in messages]
        with self.lock:
            self.started.append(offsets)
            first = len(self.started) == 1
        for p, o in offsets:
            with self.lock:
                self.touched.append((next(SEQ), p, o))
            if cancelled():
                return self._cancelled()
            time.sleep(self.slow)
        if {p for p, _ in offsets} & self.hold:
            while not self.release.wait(0.01):
                if cancelled():
                    return self._cancelled()
        if self.cancel_first and first:
            return self._cancelled()
        with self.lock:
            self.completed.extend(offsets)
        letters = [DeadLetter(m, "schema", "$: test") for m in messages] if self.dead else []
        return BatchResult(completed=True, dead_letters=letters)

    def submit(self, messages: Sequence[Message], cancelled: Callable[[], bool]
               ) -> Future[BatchResult]:
        with self.lock:
            self.running += len(messages)
        future = self._pool.submit(self.handle, messages, cancelled)
        future.add_done_callback(lambda _: self._ran(len(messages)))
        return future

    def _ran(self, n: int) -> None:
        with self.lock:
            self.running -= n

    def pending(self) -> int:
        """Messages handed over whose batch is not done (the engine's window)."""
        return self.running

    def rereads(self) -> list[tuple[str, int]]:
        """Parks nothing (tests/engine/test_parked_offsets.py's handler does)."""
        return []

    def let_go(self, partitions: Any) -> None:
        pass

    def _cancelled(self) -> BatchResult:
        with self.lock:
            self.cancelled += 1
        return BatchResult(completed=False)

    def done(self) -> set[tuple[int, int]]:
        with self.lock:
            return set(self.completed)


class Rebalances(WorkerObserver):
    def __init__(self) -> None:
        self.events: list[tuple[int, str, set[int]]] = []

    def partitions_assigned(self, tps: Sequence[TopicPartition]) -> None:
        self.events.append((next(SEQ), "assigned", {tp.partition for tp in tps}))

    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None:
        self.events.append((next(SEQ), "revoked", {tp.partition for tp in tps}))

    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None:
        self.events.append((next(SEQ), "lost", {tp.partition for tp in tps}))

    def saw(self, kind: str) -> bool:
        return any(k == kind for _, k, _ in self.events)

    def late_touches(self, handler: Handler) -> list[tuple[int, int, int]]:
        """Events of a partition touched after it was revoked or lost and before it came back."""
        late = []
        for seq, kind, parts in self.events:
            if kind == "assigned":
                continue
            for part in parts:
                back = min((s for s, k, t in self.events
                            if k == "assigned" and part in t and s > seq), default=1 << 62)
                late += [(s, p, o) for s, p, o in handler.touched if p == part and seq < s < back]
        return late


@pytest.fixture(params=["serial", "overlap"])
def make(request: pytest.FixtureRequest) -> Callable[..., Handler]:
    """Handlers that take one batch at a time, or several at once (a BatchWindow, like the
    pipeline's with only async processors)."""
    return functools.partial(Handler, overlap=request.param == "overlap")


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def events(partitions: int, per_partition: int) -> list[tuple[int, bytes]]:
    return [(p, event_json(i)) for i in range(per_partition) for p in range(partitions)]


def every(partitions: int, per_partition: int) -> set[tuple[int, int]]:
    return {(p, o) for p in range(partitions) for o in range(per_partition)}


# -- the contract ------------------------------------------------------------------------------
def test_drain_commits_past_every_finished_batch_and_stops(backend: Backend, group: str,
                                                            make: Callable[..., Handler]
                                                            ) -> None:
    topic = backend.topic(2)
    backend.produce(topic, events(2, 30))
    handler, seen = make(), Rebalances()
    engine = backend.engine(group, topic, handler, observer=seen, batch_size=7, drain=True)
    assert Running(engine).join() == EXIT_OK
    assert sorted(handler.completed) == sorted(every(2, 30))  # each once
    assert backend.committed(group, topic, 2) == {0: 30, 1: 30}
    assert engine.counts.events == 60 and engine.counts.commits >= 1
    # the engine sized the consumer's fetches from what the handler declares
    assert backend.interleaved(engine) == (handler.window is not None)


# p0 ends with an aborted transaction, p1 with a committed one; both have markers throughout
TRANSACTIONS: list[Txn] = [(0, 5, True), (1, 4, False), (0, 3, False), (1, 6, True),
                           (0, 4, True), (1, 2, True), (0, 2, False)]


@pytest.mark.parametrize("cancel_first", [False, True], ids=["plain", "cancelled"])
def test_drain_steps_over_transaction_markers_and_aborted_records(
        backend: Backend, group: str, make: Callable[..., Handler], cancel_first: bool) -> None:
    topic = backend.topic(2)
    kept = backend.produce_transactions(topic, TRANSACTIONS)
    handler, seen = make(cancel_first=cancel_first), Rebalances()
    engine = backend.engine(group, topic, handler, observer=seen, batch_size=3, drain=True)
    assert Running(engine).join() == EXIT_OK
    if cancel_first:  # (batches behind the cancelled one may have finished, and are read again)
        assert set(handler.completed) == kept
    else:
        assert sorted(handler.completed) == sorted(kept)  # each committed record once
    ends = backend.end_offsets(topic, 2)
    assert ends == {0: 18, 1: 15}  # every record and marker has an offset
    assert backend.committed(group, topic, 2) == ends  # past the trailing marker(s)


def test_a_cancelled_batch_stores_nothing_and_is_read_again(backend: Backend, group: str,
                                                              make: Callable[..., Handler]
                                                              ) -> None:
    topic = backend.topic(1)
    backend.produce(topic, events(1, 25))
    handler, seen = make(cancel_first=True), Rebalances()
    engine = backend.engine(group, topic, handler, observer=seen, batch_size=10, drain=True)
    assert Running(engine).join() == EXIT_OK
    # (with batches in flight, those behind the cancelled one are cancelled with it)
    assert engine.counts.cancelled_batches >= 1
    # sought back to the first offset: the first batch is read again
    assert any(b[:10] == handler.started[0] for b in handler.started[1:])
    assert set(handler.completed) == every(1, 25)
    assert backend.committed(group, topic, 1) == {0: 25}


@pytest.mark.parametrize("revoke_timeout", [10.0, 0.05], ids=["wait", "cancel"])
def test_revoke_waits_or_cancels_then_lets_go(backend: Backend, group: str,
                                              make: Callable[..., Handler],
                                              revoke_timeout: float) -> None:
    """B joins while A is inside a slow batch of both partitions: A finishes it within the
    revoke timeout or cancels it; A touches nothing of the revoked partition afterwards; every
    event is processed and committed."""
    topic = backend.topic(2)
    backend.produce(topic, events(2, 80))
    # The eager `range` assignor on Kafka: the revoke surely covers the in-flight partition.
    eager = {"partition.assignment.strategy": "range"}
    rec_a, rec_b, seen_a, seen_b = make(slow=0.03), make(), Rebalances(), Rebalances()
    kw: dict[str, Any] = {"batch_size": 20, "revoke_timeout": revoke_timeout,
                          "pause_after": 0.02, "overrides": eager}
    a = Running(backend.engine(group, topic, rec_a, observer=seen_a, **kw))
    wait_for(lambda: len(rec_a.completed) >= 20 and len(rec_a.touched) > len(rec_a.completed),
             30, "A inside its second batch")
    b = Running(backend.engine(group, topic, rec_b, observer=seen_b, **kw))
    wait_for(lambda: seen_a.saw("revoked"), 30, "A revoked")
    wait_for(lambda: len(rec_a.done() | rec_b.done()) >= 160, 60, "every event processed")
    assert a.stop() == EXIT_OK and b.stop() == EXIT_OK
    assert seen_a.late_touches(rec_a) == []
    assert backend.committed(group, topic, 2) == {0: 80, 1: 80}
    if revoke_timeout < 1:
        assert a.engine.counts.cancelled_batches >= 1


def test_lost_partitions_are_never_committed_and_come_back(freezable: Backend, group: str,
                                                           make: Callable[..., Handler]
                                                           ) -> None:
    """A finished but uncommitted batch (commit interval 1 h) and an in-flight one when the
    assignment is lost: the in-flight batch is cancelled, nothing of the old assignment is
    committed, and every event is processed again after the partitions come back."""
    backend = freezable
    topic = backend.topic(2)
    handler, seen = make(), Rebalances()
    engine = backend.engine(group, topic, handler, observer=seen, batch_size=100,
                            commit_interval=3600.0, commit_every=1_000_000,
                            overrides={"session.timeout.ms": "2000",
                                       "heartbeat.interval.ms": "300"})
    run = Running(engine)
    try:
        wait_for(lambda: engine.assigned == {(topic, 0), (topic, 1)}, 30, "both partitions")
        backend.produce(topic, [(0, event_json(i)) for i in range(20)])
        wait_for(lambda: {(0, o) for o in range(20)} <= handler.done(), 30, "partition 0 done")
        handler.hold = {1}
        backend.produce(topic, [(1, event_json(i)) for i in range(20)])
        wait_for(lambda: any(p == 1 for b in handler.started for p, _ in b), 30,
                 "a partition 1 batch in flight")
        backend.lose(engine, lambda: seen.saw("lost"))
        wait_for(lambda: handler.cancelled >= 1, 10, "the in-flight batch cancelled")
        assert backend.committed(group, topic, 2) == {0: NONE, 1: NONE}
        engine.config.commit_interval = 0.2  # a stale stored offset would be committed now
        before = len(handler.completed)
        handler.hold = set()
        handler.release.set()
        wait_for(lambda: len(handler.completed) >= before + 20 and
                 backend.committed(group, topic, 2) == {0: 20, 1: 20}, 60,
                 "everything processed again and committed")
    finally:
        handler.release.set()
        assert run.stop() == EXIT_OK


def test_the_guardrail_stops_before_anything_is_committed(backend: Backend, group: str,
                                                          make: Callable[..., Handler]
                                                          ) -> None:
    topic = backend.topic(1)
    backend.produce(topic, events(1, 40))
    handler, seen = make(dead=True), Rebalances()
    engine = backend.engine(group, topic, handler, observer=seen, batch_size=10,
                            dlq_max_share=0.5, dlq_window=20, guardrail_min_events=10)
    assert Running(engine).join() == EXIT_GUARDRAIL
    assert backend.committed(group, topic, 1) == {0: NONE}


class GatedSink:
    """A dead-letter sink whose letters are acknowledged only once `gate` is open; `waiting`
    is set when the engine waits for them."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self.waits = 0  # the engine's waits for letters (each up to the timeout it gives)
        self.submitted: list[tuple[int, int]] = []
        self.acked: list[tuple[int, int]] = []
        self.shrunk = 0

    def submit(self, letters: Sequence[DeadLetter]) -> GatedDelivery:
        self.submitted += [(m.source.partition() or 0, m.source.offset() or 0) for m in letters]
        return GatedDelivery(self, letters)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        self.submit(letters).wait(30)

    def serve(self) -> None:
        pass

    def close(self) -> None:
        pass


class GatedDelivery:
    def __init__(self, sink: GatedSink, letters: Sequence[DeadLetter]) -> None:
        self.sink, self.letters, self.acked = sink, letters, False

    def done(self) -> bool:
        if self.sink.gate.is_set() and not self.acked:
            self.acked = True
            self.sink.acked += [(m.source.partition() or 0, m.source.offset() or 0)
                                for m in self.letters]
        return self.acked

    def wait(self, timeout: float) -> bool:
        self.sink.waits += 1
        self.sink.waiting.set()
        self.sink.gate.wait(timeout)
        return self.done()


def gated_engine(backend: Backend, group: str, topic: str, handler: Handler, sink: GatedSink,
                 overrides: dict[str, str] | None = None, **cfg: Any) -> Engine:
    return Engine(backend.consumer(group, overrides or {}), handler,
                  EngineConfig(topics=[topic], poll_timeout=0.05, commit_interval=0.2,
                               install_signals=False, batch_size=10, dlq_max_share=1.0,
                               **cfg),
                  dlq=sink)


def test_dead_letters_on_their_way_hold_back_offsets_not_consumption(
        backend: Backend, group: str, make: Callable[..., Handler]) -> None:
    """A DLQ partition whose leader moves keeps a batch's letters unacknowledged for seconds:
    the engine reads and runs the next batches meanwhile, stores no offset past the batch, reads
    at most LETTERS_AHEAD_BATCHES batches ahead, and stores them all once the letters are
    acknowledged."""
    topic = backend.topic(1)
    backend.produce(topic, events(1, 300))
    handler, sink = make(dead=True), GatedSink()
    run = Running(gated_engine(backend, group, topic, handler, sink))
    read_on = LETTERS_AHEAD_BATCHES * 10 if handler.window is None else 40  # (its window)
    wait_for(sink.waiting.is_set, 30, "the engine waiting for the letters, past its bound")
    assert read_on <= len(handler.done()) <= read_on + 20  # (the bound, and a batch or two)
    assert sink.submitted == [(0, o) for o in range(10)]  # the oldest batch's, in order
    assert backend.committed(group, topic, 1) == {0: NONE}
    sink.gate.set()
    wait_for(lambda: backend.committed(group, topic, 1) == {0: 300}, 30, "all committed")
    assert sink.acked == [(0, o) for o in range(300)]
    assert run.stop() == EXIT_OK


def test_a_revoke_waits_for_dead_letters_on_their_way_then_lets_go(
        backend: Backend, group: str, make: Callable[..., Handler]) -> None:
    """B joins while A's letters wait for their acknowledgement: A waits for them inside its
    revoke callback without polling its consumer there (a poll nested in the consumer's own
    callback aborted the process: "CallState_get: Assertion `cs != NULL' failed"), stores and
    commits, then lets go; every event's letter written once (by A, or by B for what A had not
    finished), every event committed."""
    topic = backend.topic(2)
    backend.produce(topic, events(2, 30))
    eager = {"partition.assignment.strategy": "range"}  # (the revoke covers every partition)
    handler_a, sink_a = make(dead=True), GatedSink()
    a = Running(gated_engine(backend, group, topic, handler_a, sink_a, eager))
    wait_for(lambda: len(sink_a.submitted) >= 10, 30, "A's first letters on their way")
    handler_b, sink_b = make(dead=True), GatedSink()
    sink_b.gate.set()
    b = Running(gated_engine(backend, group, topic, handler_b, sink_b, eager))
    # (several rounds of its wait: each one without a poll of the consumer)
    wait_for(lambda: sink_a.waits >= 3, 30, "A's revoke waiting for its letters")
    sink_a.gate.set()
    wait_for(lambda: backend.committed(group, topic, 2) == {0: 30, 1: 30}, 30, "all committed")
    assert a.stop() == EXIT_OK and b.stop() == EXIT_OK
    assert sink_a.acked and sorted(sink_a.acked + sink_b.acked) == sorted(every(2, 30))


def test_shutdown_waits_for_dead_letters_on_their_way(backend: Backend, group: str,
                                                      make: Callable[..., Handler]) -> None:
    topic = backend.topic(1)
    backend.produce(topic, events(1, 30))
    handler, sink = make(dead=True), GatedSink()
    run = Running(gated_engine(backend, group, topic, handler, sink))
    wait_for(lambda: len(handler.done()) == 30, 30, "every event handled")
    assert backend.committed(group, topic, 1) == {0: NONE}
    threading.Thread(target=lambda: sink.waiting.wait(30) and sink.gate.set(),
                     daemon=True).start()
    assert run.stop() == EXIT_OK
    assert sink.acked == [(0, o) for o in range(30)]
    assert backend.committed(group, topic, 1) == {0: 30}


def test_shutdown_finishes_the_batch_and_commits_it(backend: Backend, group: str,
                                                    make: Callable[..., Handler]) -> None:
    topic = backend.topic(1)
    backend.produce(topic, events(1, 10))
    handler, seen = make(slow=0.05), Rebalances()
    run = Running(backend.engine(group, topic, handler, observer=seen, batch_size=10,
                                 commit_interval=3600.0))
    wait_for(lambda: handler.touched, 30, "a batch in flight")
    assert run.stop() == EXIT_OK
    assert sorted(handler.completed) == sorted(every(1, 10))
    assert backend.committed(group, topic, 1) == {0: 10}


def test_the_shutdown_bound_cancels_the_batch_and_commits_none_of_it(
        backend: Backend, group: str, make: Callable[..., Handler]) -> None:
    topic = backend.topic(1)
    backend.produce(topic, events(1, 10))
    handler, seen = make(), Rebalances()
    handler.hold = {0}
    run = Running(backend.engine(group, topic, handler, observer=seen, batch_size=10,
                                 shutdown_timeout=1.5))
    wait_for(lambda: handler.started, 30, "a batch in flight")
    started = time.monotonic()
    assert run.stop() == EXIT_OK
    assert time.monotonic() - started < 10
    assert handler.cancelled == 1 and handler.completed == []
    assert backend.committed(group, topic, 1) == {0: NONE}
