"""The partitions this worker holds, which of them are paused, and the messages fetched for
them that wait for the next batch (fetched while a long batch ran, before the pause took
effect). A partition's pause flag and its waiting messages go with it when it is let go."""

from __future__ import annotations

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
        todo = self.assigned - self.paused
        if todo:
            self._consumer.pause(todo)
            self.paused |= todo

    def resume_all(self) -> None:
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
        return msgs

    def drop_pending(self, partitions: Collection[TP]) -> None:
        if self.pending:
            self.pending = [m for m in self.pending
                            if (m.topic(), m.partition()) not in partitions]
