"""Parked effects: what an async effect does when its destination has been down longer than
--park-after, in a pipeline whose batches overlap (worker.processing.batch_window). Instead of
waiting in memory (holding a batch thread and the engine's window, until consumption stops for
every destination), it stops: neither done nor dead-lettered, its ledger key released, and its
batch reports the partition's first parked offset (worker.types.BatchResult.parked). The engine
stores no offset past it and reads the partition again from there once the destination would
let a call through (`rereads`); the source topic is the buffer, not memory.

The order rule, per (partition, destination): once an event of partition tp was parked for
destination D at offset X, every later event of tp routed to D parks at once, without a call,
until tp is read again from <= X (`reread_from`, at registration, in read order). Effects of
batches read before that re-read (still in flight, their events read again anyway) park too,
so a key's effects reach D in offset order (`must_park`: the "fence").

One log line per park of a (partition, destination), never one per event; each destination's
counts are on its circuit (`parked`, `held`: worker.observability.collectors).

Thread-safety: parks and registrations happen on the effects' event loop; `rereads` and
`forget` come from the engine's thread. The tables are read unlocked on the hot path (a dict's
truth test) and changed under the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable

import structlog

from worker.processing.circuit import Circuits
from worker.processing.planning import Work

log = structlog.get_logger(__name__)

TP = tuple[str, int]

#: Seconds a destination's circuit stays not-closed before the effects waiting on it park
#: (--park-after).
DEFAULT_PARK_AFTER = 5.0


class Parking:
    def __init__(self, circuits: Circuits, park_after: float | None = None) -> None:
        """`park_after`: None, and nothing parks (the effects wait as long as the circuit
        says: a pipeline whose batches do not overlap, exactly-once mode)."""
        self.park_after = park_after
        self._circuits = circuits
        self._lock = threading.Lock()
        #: (partition, destination) -> its first parked offset X
        self.at: dict[tuple[TP, str], int] = {}
        #: (partition, destination) -> (X, ticket) of its last re-read: the effects of batches
        #: registered before that ticket at offsets >= X are stale (read again)
        self.fences: dict[tuple[TP, str], tuple[int, int]] = {}

    @property
    def active(self) -> bool:
        """Whether an effect must ask `must_park` (something is parked or fenced)."""
        return bool(self.at) or bool(self.fences)

    def must_park(self, tp: TP, destination: str, offset: int, ticket: int | None) -> bool:
        """An effect about to call `destination`: True when it must park at once (an earlier
        event of its partition is parked for that destination, or it is stale)."""
        key = (tp, destination)
        x = self.at.get(key)
        if x is not None and offset >= x:
            return True
        fence = self.fences.get(key)
        return (fence is not None and ticket is not None and ticket < fence[1]
                and offset >= fence[0])

    def parked(self, tp: TP, destination: str, offset: int, *, record: bool = True) -> None:
        """An effect of `tp` at `offset` parked for `destination`; `record`: it may start a
        hold (False: a stale effect, whose event is read again anyway)."""
        circuit = self._circuits[destination]
        with self._lock:
            circuit.parked += 1
            if not record:
                return
            key = (tp, destination)
            x = self.at.get(key)
            if x is not None and x <= offset:
                return
            self.at[key] = offset
            if x is None:
                circuit.held += 1
        if x is None:
            log.warning("events parked: their destination is down; the partition is read "
                        "again from here once it can be probed", destination=destination,
                        partition=f"{tp[0]}[{tp[1]}]", offset=offset,
                        down_for_s=round(circuit.down_seconds(), 3))

    def reread_from(self, work: Iterable[Work], ticket: int) -> None:
        """A batch registers its effects (in read order): its events at or before a parked
        offset of their partition and destination are that partition read again; the park
        ends there, and a fence keeps the effects registered before from calling."""
        at = self.at
        with self._lock:
            for msg, _, proc, _, _ in work:
                key = ((msg.topic() or "", msg.partition() or 0), proc.destination_name)
                x = at.get(key)
                if x is not None and (msg.offset() or 0) <= x:
                    del at[key]
                    self.fences[key] = (x, ticket)
                    self._circuits[proc.destination_name].held -= 1
                    if not at:
                        return

    def drop_fences(self, oldest_running: int | None) -> None:
        """Fences no effect can meet any more: every batch registered before them ended
        (`oldest_running`: the oldest ticket whose effects still run; None: none runs)."""
        with self._lock:
            for key, (_, ticket) in list(self.fences.items()):
                if oldest_running is None or oldest_running >= ticket:
                    del self.fences[key]

    def rereads(self) -> list[TP]:
        """Partitions with a parked event whose destination would let a call through now."""
        if not self.at:
            return []
        with self._lock:
            parked = list(self.at)
        circuits = self._circuits
        return sorted({tp for tp, destination in parked if circuits[destination].probe_due()})

    def forget(self, partitions: Collection[TP]) -> None:
        """Partitions revoked or lost: nothing of them is held here any more."""
        gone = set(partitions)
        with self._lock:
            for key in [k for k in self.at if k[0] in gone]:
                del self.at[key]
                self._circuits[key[1]].held -= 1
            for key in [k for k in self.fences if k[0] in gone]:
                del self.fences[key]
