"""The partitions this worker holds, which of them are paused, and the messages fetched for
them that wait for the next batch (fetched while a long batch ran). A partition's pause flag and
its waiting messages go with it when it is let go.

While a long batch runs the engine keeps polling and keeps what it gets (`keep`); a partition is
paused once it has its share of the next batch waiting, not before. Pausing every partition at
once would lose what librdkafka had prefetched for them (a pause purges a partition's fetch
queue: rd_kafka_toppar_pause_resume), and with every batch long, as in a catch-up, a partition
whose fetches answer later than the others' (its leader a broker just restarted) would lose its
records to every pause and stand still for as long as the backlog lasts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any

from worker.engine.consumer_port import ConsumerPort
from worker.types import TP


class Assignment:
    def __init__(self, consumer: ConsumerPort) -> None:
        self._consumer = consumer
        self.assigned: set[TP] = set()
        self.paused: set[TP] = set()
        # paused until read again from a parked event (worker.engine.offsets, read_ahead):
        # not resumed with the others
        self.held_back: set[TP] = set()
        self.pending: list[Any] = []
        self._pending_of: Counter[TP] = Counter()
        #: every partition paused (dead letters cannot be written): new ones start paused
        self.halted = False

    def add(self, partitions: Collection[TP], *, paused: bool) -> None:
        """Partitions assigned; `paused` while a batch runs, so nothing piles up in memory."""
        self.assigned.update(partitions)
        if not partitions:
            return
        if paused:
            self._consumer.pause(partitions)
            self.paused.update(partitions)
        else:
            # librdkafka keeps a partition's pause flag across unassign/assign: clear it.
            self._consumer.resume(partitions)

    def remove(self, gone: Collection[TP]) -> None:
        """Partitions revoked or lost: forget them, their pause flag and waiting messages."""
        gone = set(gone)
        self.drop_pending(gone)
        paused = gone & self.paused
        if paused:
            self._consumer.resume(paused)  # the flag would outlive the assignment (see add)
        self.assigned -= gone
        self.paused -= gone
        self.held_back -= gone

    def pause_all(self) -> None:
        self.halted = True
        todo = self.assigned - self.paused
        if todo:
            self._consumer.pause(todo)
            self.paused |= todo

    def keep(self, m: Any, tp: TP, share: int) -> None:
        """A message fetched while a batch runs waits for the next batch; its partition is
        paused once `share` of its messages wait."""
        self.pending.append(m)
        n = self._pending_of[tp] = self._pending_of[tp] + 1
        if n >= share and tp not in self.paused:
            self._consumer.pause([tp])
            self.paused.add(tp)

    def share(self, batch_size: int) -> int:
        """Each partition's share of the next batch: what may wait of it before it is paused."""
        return max(1, -(-batch_size // max(1, len(self.assigned))))

    def resume_all(self) -> None:
        self.halted = False
        todo = self.paused & self.assigned
        if self.held_back:
            todo -= self.held_back
            self.paused &= self.held_back
        else:
            self.paused.clear()
        if todo:
            self._consumer.resume(todo)

    def hold_back(self, partitions: Collection[TP]) -> None:
        """Pause these partitions until `let_back` (read far enough ahead of a parked
        event)."""
        todo = set(partitions) & self.assigned - self.held_back
        if todo:
            self.held_back |= todo
            todo -= self.paused
            if todo:
                self._consumer.pause(todo)
                self.paused |= todo

    def let_back(self, partitions: Collection[TP]) -> None:
        """Resume partitions held back (they are read again from their parked event)."""
        todo = self.held_back & set(partitions)
        if todo:
            self.held_back -= todo
            self.paused -= todo
            self._consumer.resume(todo)

    def take_pending(self, n: int) -> list[Any]:
        msgs = self.pending[:n]
        del self.pending[:n]
        if not self.pending:
            self._pending_of.clear()
        else:
            counts = self._pending_of
            for m in msgs:
                counts[(m.topic(), m.partition())] -= 1
        return msgs

    def drop_pending(self, partitions: Collection[TP]) -> None:
        if self.pending:
            self.pending = [m for m in self.pending
                            if (m.topic(), m.partition()) not in partitions]
            self._pending_of = Counter((m.topic(), m.partition()) for m in self.pending)
