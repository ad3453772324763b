"""A broker in memory: topics with partitions, consumer groups that assign, revoke and lose
partitions, stored and committed offsets. Its consumers implement
worker.engine.consumer_port.ConsumerPort,
so the engine's offset, rebalance, drain and shutdown rules run in tests without Kafka (in the
spirit of arroyo's LocalBroker); tests/engine/test_engine_contract.py runs the same scenarios
on it and on a real broker.

The group protocol is cooperative: when members join or leave, each partition is assigned
round-robin over the members in join order; a partition moving from A to B is given to B only
after A's revoke callback returned (so two members never hold it at once), except after
`expire(A)` (a missed session timeout), when it moves at once and A learns on its next call
that it was lost — its commits for it are refused, as a real coordinator refuses a fenced
member's.

`skip(topic, partition, n)` appends offsets that a consumer steps over without handing them
over, as librdkafka does with transaction markers and, under read_committed, with aborted
transactions' records: the consumer's `positions` move past them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

from worker.engine.consumer_port import ClientError, CommitFailed, ConsumerListener
from worker.errors import WorkerError
from worker.types import TP, Headers, LocalMessage

FETCH_RUN = 10  # records of one partition in a row


class _Group:
    def __init__(self) -> None:
        self.members: list[InMemoryConsumer] = []
        self.owner: dict[TP, InMemoryConsumer] = {}
        self.target: dict[int, set[TP]] = {}  # id(member) -> what it should hold
        self.committed: dict[TP, int] = {}


class InMemoryBroker:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._logs: dict[str, list[list[LocalMessage | None]]] = {}  # None: skipped
        self._groups: dict[str, _Group] = {}
        self._ids = itertools.count(1)

    # -- topics ------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1) -> None:
        with self._cond:
            self._logs.setdefault(name, [[] for _ in range(partitions)])
            for group in self._groups.values():
                self._rebalance(group)

    def produce(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                partition: int = 0, headers: Headers | None = None,
                timestamp_ms: int | None = None) -> int:
        """Append a record; returns its offset."""
        with self._cond:
            log = self._logs[topic][partition]
            ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
            log.append(LocalMessage(value, topic, partition, len(log), key, headers, ts))
            self._cond.notify_all()
            return len(log) - 1

    def skip(self, topic: str, partition: int = 0, n: int = 1) -> int:
        """Append `n` offsets that consumers never see (a transaction marker, aborted records);
        returns the first."""
        with self._cond:
            log = self._logs[topic][partition]
            first = len(log)
            log.extend([None] * n)
            self._cond.notify_all()
            return first

    def end_offsets(self, topic: str) -> list[int]:
        with self._cond:
            return [len(p) for p in self._logs[topic]]

    def committed(self, group: str, tp: TP) -> int:
        """The group's committed offset (-1001 when none, like librdkafka's OFFSET_INVALID)."""
        with self._cond:
            return self._groups.get(group, _Group()).committed.get(tp, -1001)

    # -- groups ------------------------------------------------------------------------------
    def consumer(self, group: str) -> InMemoryConsumer:
        return InMemoryConsumer(self, group)

    def expire(self, member: InMemoryConsumer) -> None:
        """The member missed its session timeout: its partitions move on now; it learns that
        they were lost on its next call, and then joins again."""
        with self._cond:
            member._lost = True
            self._leave(member)

    def _join(self, member: InMemoryConsumer) -> None:
        group = self._groups.setdefault(member.group, _Group())
        if member not in group.members:
            group.members.append(member)
            member._member_id = f"{member.group}-member-{next(self._ids)}"
        self._rebalance(group)

    def _leave(self, member: InMemoryConsumer) -> None:
        group = self._groups[member.group]
        if member in group.members:
            group.members.remove(member)
        for tp, owner in list(group.owner.items()):
            if owner is member:
                del group.owner[tp]
        self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        topics = sorted({t for m in group.members for t in m._topics})
        parts = [(t, p) for t in topics if t in self._logs
                 for p in range(len(self._logs[t]))]
        group.target = {id(m): set() for m in group.members}
        for i, tp in enumerate(parts):
            if group.members:
                member = group.members[i % len(group.members)]
                if tp[0] in member._topics:
                    group.target[id(member)].add(tp)
        self._cond.notify_all()


class InMemoryConsumer:
    """One group member; implements worker.engine.consumer_port.ConsumerPort."""

    def __init__(self, broker: InMemoryBroker, group: str) -> None:
        self._broker = broker
        self.group = group
        self._listener: ConsumerListener | None = None
        self._in_callback = False
        self.interleaved = False  # what the engine asked of open()
        self._topics: set[str] = set()
        self._member_id = ""
        self._held: set[TP] = set()
        self._paused: set[TP] = set()
        self._position: dict[TP, int] = {}
        self._stored: dict[TP, int] = {}
        # asynchronous commits' outcomes, reported at the next call: offsets, or a failure
        self._commit_results: list[list[tuple[TP, int]] | str] = []
        self._lost = False
        self._closed = False

    @property
    def _group(self) -> _Group:
        return self._broker._groups[self.group]

    # -- lifecycle -------------------------------------------------------------------------
    def open(self, listener: ConsumerListener, *, interleave_partitions: bool = False) -> None:
        self._listener = listener
        self.interleaved = interleave_partitions  # (nothing to fetch: in memory already)

    def settings(self) -> dict[str, Any]:
        return {"broker": "in-memory", "group.id": self.group}

    def subscribe(self, topics: Sequence[str]) -> None:
        with self._broker._cond:
            self._topics = set(topics)
            self._broker._join(self)

    def close(self) -> None:
        if self._closed:
            return
        self._serve()
        if self._held:
            self._call("on_revoke", sorted(self._held))
        with self._broker._cond:
            self._held.clear()
            self._broker._leave(self)
            self._closed = True

    # -- the group protocol, run inside this member's calls (like librdkafka's callbacks) ---
    def _serve(self) -> None:
        cond = self._broker._cond
        with cond:
            if not self._member_id or self._closed:
                return
            was_lost = self._lost
            lost = sorted(self._held) if was_lost else []
            results, self._commit_results = self._commit_results, []
        for done in results:
            if isinstance(done, str):
                self._call("on_commit_failed", done)
            else:
                self._call("on_commit", done, asynchronous=True)
        if was_lost:
            self._call("on_lost", lost)
            with cond:
                self._held.clear()
                self._stored.clear()
                self._lost = False
                self._broker._join(self)
        with cond:
            group = self._group
            target = group.target.get(id(self), set())
            revoke = sorted(self._held - target)
        if revoke:
            self._call("on_revoke", revoke)
            with cond:
                for tp in revoke:
                    self._held.discard(tp)
                    self._paused.discard(tp)
                    self._stored.pop(tp, None)
                    if group.owner.get(tp) is self:
                        del group.owner[tp]
                cond.notify_all()
        with cond:
            assign = sorted(tp for tp in group.target.get(id(self), set()) - self._held
                            if tp not in group.owner)
            for tp in assign:
                group.owner[tp] = self
                self._held.add(tp)
                self._position[tp] = max(0, group.committed.get(tp, 0))
        if assign:
            self._call("on_assign", assign)

    def _call(self, hook: str, arg: Any, **kwargs: Any) -> None:
        if self._listener is not None:
            self._in_callback = True
            try:
                getattr(self._listener, hook)(arg, **kwargs)
            finally:
                self._in_callback = False

    def _not_nested(self) -> None:
        """Like confluent-kafka, which aborts the process on the next callback once a poll ran
        inside a callback ("CallState_get: Assertion `cs != NULL' failed"): refuse it."""
        if self._in_callback:
            raise RuntimeError("the consumer was polled inside its own rebalance callback")

    # -- reading ---------------------------------------------------------------------------
    def consume(self, n: int, timeout: float) -> list[Any]:
        self._not_nested()
        deadline = time.monotonic() + timeout
        while True:
            self._serve()
            with self._broker._cond:
                out = self._take(n)
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                self._broker._cond.wait(min(left, 0.05))

    def poll(self) -> Any | None:
        self._not_nested()
        self._serve()
        with self._broker._cond:
            got = self._take(1)
        return got[0] if got else None

    def _take(self, n: int) -> list[LocalMessage]:
        """Up to `n` records, in runs of at most FETCH_RUN per partition taken in turn (a real
        fetch also mixes partitions in one batch)."""
        out: list[LocalMessage] = []
        logs = self._broker._logs
        active = sorted(self._held - self._paused)
        while active and len(out) < n:
            for tp in list(active):
                log = logs[tp[0]][tp[1]]
                pos = self._position.get(tp, 0)
                chunk = log[pos:pos + min(FETCH_RUN, n - len(out))]
                if not chunk:
                    active.remove(tp)
                    continue
                self._position[tp] = pos + len(chunk)
                out.extend(m for m in chunk if m is not None)
                if len(out) >= n:
                    break
        return out

    def message_error(self, message: Any) -> ClientError | None:
        return None

    def pause(self, partitions: Collection[TP]) -> None:
        self._paused |= set(partitions)

    def resume(self, partitions: Collection[TP]) -> None:
        self._paused -= set(partitions)

    def seek(self, tp: TP, offset: int) -> None:
        if tp not in self._held:
            raise RuntimeError(f"{tp} is not assigned")
        self._position[tp] = offset

    # -- offsets ---------------------------------------------------------------------------
    def store(self, offsets: Sequence[tuple[TP, int]]) -> None:
        for tp, offset in offsets:
            if tp in self._held:
                self._stored[tp] = offset

    def commit(self, offsets: Sequence[tuple[TP, int]] | None = None, *,
               asynchronous: bool) -> list[tuple[TP, int]]:
        with self._broker._cond:
            todo = list(self._stored.items()) if offsets is None else list(offsets)
            if not todo:
                if asynchronous:
                    self._commit_results.append([])
                return []
            group = self._group
            fenced = [tp for tp, _ in todo if group.owner.get(tp) is not self]
            if fenced:
                refused = f"not the owner of {fenced} (the group moved on)"
                if asynchronous:
                    self._commit_results.append(refused)
                    return []
                raise CommitFailed(refused)
            for tp, offset in todo:
                group.committed[tp] = offset
            if asynchronous:
                self._commit_results.append(todo)
                return []
        self._call("on_commit", todo, asynchronous=False)
        return todo

    def positions(self, partitions: Collection[TP]) -> dict[TP, int]:
        with self._broker._cond:
            return {tp: self._position.get(tp, -1001) if tp in self._held else -1001
                    for tp in partitions}

    def committed(self, partitions: Collection[TP], timeout: float) -> dict[TP, int]:
        with self._broker._cond:
            group = self._broker._groups.get(self.group, _Group())
            return {tp: group.committed.get(tp, -1001) for tp in partitions}

    # -- metadata --------------------------------------------------------------------------
    def member_id(self) -> str:
        return self._member_id

    def group_metadata(self) -> Any:
        return ("in-memory", self._member_id)

    def reachable(self, topic: str, timeout: float) -> bool:
        return True

    def partitions_of(self, topics: Sequence[str]) -> list[TP]:
        out: list[TP] = []
        with self._broker._cond:
            for topic in topics:
                if topic not in self._broker._logs:
                    raise WorkerError(f"topic {topic!r} does not exist; create it first")
                out.extend((topic, p) for p in range(len(self._broker._logs[topic])))
        return out

    def stable_offsets(self, partitions: Collection[TP]) -> dict[TP, tuple[int, int]]:
        ends = self.watermarks(partitions)
        return {tp: (high, high) for tp, (_low, high) in ends.items()}  # no open transactions

    def watermarks(self, partitions: Collection[TP], *, cached: bool = False
                   ) -> dict[TP, tuple[int, int]]:
        with self._broker._cond:
            return {tp: (0, len(self._broker._logs[tp[0]][tp[1]])) for tp in partitions}

    @property
    def held(self) -> frozenset[TP]:
        return frozenset(self._held)
