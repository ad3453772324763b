"""Parked events in the engine (BatchResult.parked; docs/engine.md, "Parked events"), on the
in-memory broker and on a real one: a partition with a parked event is held there (later
batches of it finish, its committed offset stays at the parked event), the other partitions
flow, a held partition is read ahead at most `held_read_ahead` events, and once the handler
says so it is read again from the parked event and committed past it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import pytest

from tests.engine.helpers import Running, wait_for
from tests.engine.test_engine_contract import Backend, Handler, Kafka, Memory, Rebalances, events
from worker.engine.lifecycle import EXIT_OK
from worker.types import BatchResult, Message

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The contract's two brokers (tests/engine/test_engine_contract.py)."""
    if request.param == "memory":
        return Memory()
    return Kafka(request.getfixturevalue("kafka_bootstrap"))


@pytest.fixture
def group() -> str:
    return f"g-park-{uuid.uuid4().hex[:10]}"


class Parker(Handler):
    """A batch window whose destination is down while `down` is set: the events of the
    partitions in `park` at or past their offset there are parked (not completed), and the
    partitions are read again (`rereads`) once it is up."""

    def __init__(self, park: dict[int, int]) -> None:
        super().__init__(overlap=True)
        self.park = park
        self.down = threading.Event()
        self.down.set()
        self.topic = ""
        self.parked: list[tuple[int, int]] = []
        self.waiting: set[int] = set()  # partitions with parked events not read again
        self.first_parked: dict[int, int] = {}

    def submit(self, messages: Sequence[Message], cancelled: Callable[[], bool]
               ) -> Future[BatchResult]:
        """Decides what parks in the order batches are read (as the pipeline does when a
        batch registers its effects), then handles the rest in the background."""
        down = self.down.is_set()
        kept: list[Message] = []
        firsts: dict[tuple[str, int], int] = {}
        with self.lock:
            for m in messages:
                p, o = m.partition() or 0, m.offset() or 0
                if p in self.waiting and not down and o <= self.first_parked[p]:
                    self.waiting.discard(p)  # read again from the parked event
                if (down and o >= self.park.get(p, 1 << 62)) or p in self.waiting:
                    self.parked.append((p, o))
                    if p not in self.waiting:
                        self.waiting.add(p)
                        self.first_parked[p] = o
                    firsts.setdefault((m.topic() or "", p), o)
                else:
                    kept.append(m)
        future = super().submit(kept, cancelled)
        if not firsts:
            return future
        parked: Future[BatchResult] = Future()

        def done(f: Future[BatchResult]) -> None:
            result = f.result()
            if result.completed:
                result.parked = firsts
            parked.set_result(result)

        future.add_done_callback(done)
        return parked

    def rereads(self) -> list[tuple[str, int]]:
        with self.lock:
            return [] if self.down.is_set() else [(self.topic, p) for p in self.waiting]


def test_a_parked_event_holds_its_partition_until_it_is_read_again(backend: Backend,
                                                                    group: str) -> None:
    topic = backend.topic(3)
    backend.produce(topic, events(3, 60))
    handler, seen = Parker({1: 20}), Rebalances()
    handler.topic = topic
    run = Running(backend.engine(group, topic, handler, observer=seen, batch_size=7))
    try:
        # the other partitions flow; partition 1 is read on past the parked event
        wait_for(lambda: backend.committed(group, topic, 3) == {0: 60, 1: 20, 2: 60}, 60,
                 "partitions 0 and 2 committed, partition 1 held at 20")
        wait_for(lambda: (1, 59) in handler.parked, 30, "partition 1 read past 20")
        assert {(1, o) for o in range(20)} <= handler.done()
        assert not {(1, o) for o in range(20, 60)} & handler.done()
        # still held once its later batches finished and were committed
        engine = run.engine
        wait_for(lambda: not engine._inflight and not engine._offsets.uncommitted, 30,
                 "every batch finished and committed")
        assert engine._offsets.stored[(topic, 1)] == 20
        assert backend.committed(group, topic, 3)[1] == 20
        handler.down.clear()  # the destination is back: read again from 20
        wait_for(lambda: backend.committed(group, topic, 3) == {0: 60, 1: 60, 2: 60}, 60,
                 "partition 1 read again and committed")
        assert {(1, o) for o in range(60)} <= handler.done()
        assert sorted(o for p, o in handler.completed if p == 1) == list(range(60))  # once
    finally:
        assert run.stop() == EXIT_OK


def test_a_held_partition_is_read_ahead_at_most_its_bound(backend: Backend, group: str) -> None:
    topic = backend.topic(2)
    backend.produce(topic, [(1, e) for _, e in events(1, 600)] + events(1, 30))
    handler, seen = Parker({1: 10}), Rebalances()
    handler.topic = topic
    run = Running(backend.engine(group, topic, handler, observer=seen, batch_size=10,
                                 held_read_ahead=50))
    try:
        wait_for(lambda: backend.committed(group, topic, 2) == {0: 30, 1: 10}, 60,
                 "partition 0 committed, partition 1 held at 10")
        wait_for(lambda: run.engine._parts.held_back == {(topic, 1)}, 30,
                 "partition 1 paused")
        furthest = max(o for p, o in handler.parked if p == 1)
        # the bound, plus what the window had in flight when the hold became known and what
        # a fetch brought meanwhile
        assert furthest < 10 + 50 + handler.max_events_in_flight + 10 * 10, furthest
        handler.down.clear()
        wait_for(lambda: backend.committed(group, topic, 2) == {0: 30, 1: 600}, 60,
                 "partition 1 read again to its end and committed")
        assert sorted(o for p, o in handler.completed if p == 1) == list(range(600))
    finally:
        assert run.stop() == EXIT_OK


def test_parked_events_never_let_a_revoke_commit_past_them(backend: Backend, group: str) -> None:
    """A stop (it leaves the group: a revoke commits what is stored) while partition 0 is
    held: the committed offset is the parked event; a restart reads again from there."""
    topic = backend.topic(1)
    backend.produce(topic, events(1, 40))
    handler, seen = Parker({0: 15}), Rebalances()
    handler.topic = topic
    run = Running(backend.engine(group, topic, handler, observer=seen, batch_size=5,
                                 commit_interval=3600.0, commit_every=1_000_000))
    wait_for(lambda: (0, 39) in handler.parked, 30, "read past the parked event")
    assert run.stop() == EXIT_OK
    assert backend.committed(group, topic, 1) == {0: 15}
    again = Parker({})
    again.topic = topic
    run = Running(backend.engine(group, topic, again, observer=seen, batch_size=5))
    try:
        wait_for(lambda: backend.committed(group, topic, 1) == {0: 40}, 60, "the rest")
        assert min(o for p, o in again.completed) == 15
    finally:
        assert run.stop() == EXIT_OK

