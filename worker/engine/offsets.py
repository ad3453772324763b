"""Where offsets are decided: the one object that knows, per partition, what is stored (finished
and may be committed), what the broker has committed, what must be re-read after a cancelled
batch, and when the commit policy (every N events or T seconds) asks for a commit.

It talks to no broker: the engine applies what it decides (`store_offsets`, `commit`, `seek`)
and reports what the broker confirmed. So the rules are testable without Kafka:
- an offset is stored only past a batch whose every event finished (`finished`), and only for
  partitions still assigned;
- a cancelled batch stores nothing and is re-read from its first offset (`cancelled`, `seeks`);
- a revoked partition gets a last commit of what is stored; a lost one gets none; both are
  forgotten (`forget`);
- past what the client skips without handing it over (transaction markers, aborted
  transactions' records under read_committed), the stored offset moves to the client's
  position, but only once every record handed over on that partition finished
  (`settled`, `step_over`; docs/engine.md, "Transactional topics");
- a partition with a parked event (BatchResult.parked: its destination is down) is held at the
  first parked offset X: later batches of it finish, but its stored offset stays <= X, the
  step-over leaves it alone, and it may be read ahead of X by at most `read_ahead` events
  (`read_ahead_over`: pause it). It is read again from X when the handler says so
  (`reread`); the batch read again from <= X ends the hold, or holds it at its own first
  parked offset (docs/engine.md, "Parked events").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from worker.types import TP


class CommitPolicy(Protocol):
    """Read at each decision, so a running engine's policy can be changed (EngineConfig)."""

    commit_every: int        # commit once this many events finished since the last commit
    commit_interval: float   # ... or once this many seconds passed


@dataclass
class Policy:
    commit_every: int
    commit_interval: float


class Confirmed(Enum):
    """What a commit confirmation did to a partition's committed offset."""

    ADVANCED = "advanced"
    SAME = "same"
    WENT_BACK = "went_back"


#: How far a held partition may be read ahead of its first parked event (events) before it is
#: paused until it is read again: what a long outage costs in re-reads per probe cycle, and
#: in the ledger's memory of what the healthy destinations did meanwhile.
HELD_READ_AHEAD = 50_000


class OffsetTracker:
    def __init__(self, policy: CommitPolicy,
                 clock: Callable[[], float] = time.monotonic,
                 read_ahead: int = HELD_READ_AHEAD) -> None:
        self.policy = policy
        self.read_ahead = read_ahead
        self.held: dict[TP, int] = {}        # partition -> its first parked offset (X)
        self._rereading: set[TP] = set()     # held, sought back to X, not read again yet
        self._clock = clock
        self.stored: dict[TP, int] = {}      # next offset to read, past finished events
        self.committed: dict[TP, int] = {}   # as the broker confirmed it
        self.last_ts: dict[TP, int] = {}     # Kafka timestamp of the last finished event
        self._seek_back: dict[TP, int] = {}
        self.handed: dict[TP, int] = {}      # one past the last record handed to the handler
        self._sought: set[TP] = set()        # rewound: the client's position is stale until a
        #                                      record of the partition is handed over again
        self.uncommitted = 0                 # events finished since the last commit
        self._last_commit = clock()

    # -- a batch is handed over ---------------------------------------------------------------
    def handed_over(self, last: Mapping[TP, int]) -> None:
        """These records (the last offset per partition) go to the handler now."""
        handed = self.handed
        for tp, offset in last.items():
            handed[tp] = offset + 1
        if self._sought:
            self._sought.difference_update(last)

    # -- a batch ended ------------------------------------------------------------------------
    def finished(self, last: Mapping[TP, int], last_ts: Mapping[TP, int], events: int,
                 assigned: Collection[TP], first: Mapping[TP, int] | None = None,
                 parked: Mapping[TP, int] | None = None) -> list[tuple[TP, int]]:
        """Every event of a batch is done or parked (dead letters confirmed): the offsets to
        store, one past each partition's last event, for the partitions still ours; but never
        past a parked event (`parked`: the batch's first parked offset per partition; `first`:
        the batch's first offsets, needed once a partition is held)."""
        out: list[tuple[TP, int]] = []
        held = self.held
        for tp, offset in last.items():
            if tp in assigned:
                end = offset + 1
                if held or parked:  # (neither: the common case)
                    end = self._hold(tp, end, first, parked)
                self.stored[tp] = end
                self.last_ts[tp] = last_ts[tp]
                out.append((tp, end))
        self.uncommitted += events
        return out

    def _hold(self, tp: TP, end: int, first: Mapping[TP, int] | None,
              parked: Mapping[TP, int] | None) -> int:
        """The offset to store for `tp` (one past the batch's last event: `end`) under the
        hold rule. Batches finish in the order they were read, so one that starts at or
        before the held offset is the partition read again: it ends the hold, and its own
        parked events (if any) hold it anew."""
        held = self.held
        x = held.get(tp)
        if x is not None and first is not None and first.get(tp, x + 1) <= x:
            del held[tp]
            self._rereading.discard(tp)
            x = None
        p = parked.get(tp) if parked else None
        if p is not None:
            x = p if x is None else min(x, p)
            held[tp] = x
        return end if x is None else min(end, x)

    # -- parked events ------------------------------------------------------------------------
    def reread(self, partitions: Iterable[TP], assigned: Collection[TP]) -> dict[TP, int]:
        """The handler says these partitions' parked events may be read again: the held ones
        (still ours, not already sought back) are sought back to their held offset. Returns
        those, with the offset."""
        out: dict[TP, int] = {}
        for tp in partitions:
            x = self.held.get(tp)
            if x is not None and tp in assigned and tp not in self._rereading:
                self._rereading.add(tp)
                self._seek_back[tp] = min(x, self._seek_back.get(tp, x))
                out[tp] = x
        return out

    def read_ahead_over(self) -> list[TP]:
        """Held partitions handed over more than `read_ahead` events past their held offset
        (and not being read again): to pause until they are."""
        handed, limit = self.handed, self.read_ahead
        return [tp for tp, x in self.held.items()
                if tp not in self._rereading and handed.get(tp, x) - x > limit]

    def cancelled(self, first: Mapping[TP, int], assigned: Collection[TP]) -> set[TP]:
        """A batch was cancelled (revoke, shutdown): nothing of it is stored, and its partitions
        that are still ours are re-read from its first offset. Returns those partitions."""
        held = self.held
        for tp, offset in first.items():
            if tp in assigned:  # several batches cancelled together: the earliest first offset
                if tp in held:  # never past a parked event: read it again too
                    offset = min(offset, held[tp])
                self._seek_back[tp] = min(offset, self._seek_back.get(tp, offset))
        return set(self._seek_back)

    def unstore(self, first: Mapping[TP, int]) -> None:
        """Exactly-once mode, an aborted transaction: what its finished batches stored is
        undone (they are read again from `first`)."""
        for tp, offset in first.items():
            if self.stored.get(tp, -1) > offset:
                self.stored[tp] = max(offset, self.committed.get(tp, offset))

    @property
    def rewinds_pending(self) -> bool:
        return bool(self._seek_back)

    def seeks(self) -> dict[TP, int]:
        """The rewinds to apply now (each once)."""
        seeks, self._seek_back = self._seek_back, {}
        self._sought.update(seeks)
        for tp, offset in seeks.items():
            self.handed[tp] = offset
        return seeks

    # -- what the client skipped --------------------------------------------------------------
    def settled(self, assigned: Iterable[TP]) -> list[TP]:
        """The partitions whose every handed-over record finished (and that were not rewound
        since): for them the client's position is past nothing but records it never hands
        over, so the stored offset may move up to it."""
        if self._seek_back:
            return []
        handed, stored, sought, held = self.handed, self.stored, self._sought, self.held
        return [tp for tp in assigned
                if tp not in sought and tp not in held and handed.get(tp) == stored.get(tp)]

    def step_over(self, positions: Mapping[TP, int]) -> list[tuple[TP, int]]:
        """The client's positions of `settled` partitions: where one is past the stored (or
        committed) offset, store it; returns the offsets to store. Only what the client
        skipped lies in between (transaction markers, aborted records), so no event is
        passed over."""
        out: list[tuple[TP, int]] = []
        for tp, pos in positions.items():
            if pos >= 0 and pos > self.stored.get(tp, self.committed.get(tp, -1)):
                self.stored[tp] = self.handed[tp] = pos
                out.append((tp, pos))
        if out:
            self.commit_again()
        return out

    # -- commits ------------------------------------------------------------------------------
    def commit_due(self) -> bool:
        policy = self.policy
        return bool(self.uncommitted) and (
            self.uncommitted >= policy.commit_every
            or self._clock() - self._last_commit >= policy.commit_interval)

    def committing_all(self) -> None:
        """A commit of everything stored was sent."""
        self.uncommitted = 0
        self._last_commit = self._clock()

    def to_commit(self, partitions: Iterable[TP]) -> list[tuple[TP, int]]:
        """What a commit of just these partitions (on revoke) must send: their stored offsets
        not yet committed."""
        return [(tp, self.stored[tp]) for tp in partitions
                if tp in self.stored and self.stored[tp] != self.committed.get(tp)]

    def committed_partitions(self) -> None:
        self._last_commit = self._clock()

    def confirmed(self, tp: TP, offset: int) -> Confirmed:
        """The broker confirmed a commit of `offset`. An older commit confirmed after a newer
        one (librdkafka retries a commit that met a coordinator change, and the retry can land
        after a later commit) is what the broker now holds: it is taken as the committed offset
        and the stored one is committed again at the next commit tick."""
        before = self.committed.get(tp)
        if before == offset:
            return Confirmed.SAME
        self.committed[tp] = offset
        if before is not None and offset < before:
            if self.stored.get(tp, offset) > offset:
                self.commit_again()
            return Confirmed.WENT_BACK
        return Confirmed.ADVANCED

    def commit_again(self) -> None:
        """What is stored must be committed again (a commit failed, or an older one landed last):
        the next commit tick sends it even if no new event finished."""
        self.uncommitted = max(self.uncommitted, 1)

    # -- assignment ---------------------------------------------------------------------------
    def forget(self, partitions: Iterable[TP]) -> None:
        """Partitions revoked or lost: nothing of them is kept (a later owner starts from what
        the broker has committed)."""
        for tp in partitions:
            self._seek_back.pop(tp, None)
            self._sought.discard(tp)
            self.held.pop(tp, None)
            self._rereading.discard(tp)
            self.handed.pop(tp, None)
            self.stored.pop(tp, None)
            self.committed.pop(tp, None)

    def position(self, tp: TP, low: int) -> int:
        """Where reading this partition stands, for lag."""
        return self.stored.get(tp, self.committed.get(tp, low))

    def behind(self, tp: TP, high: int) -> bool:
        """Ours, consuming, and not yet past `high` (drain mode needs no broker round trip)."""
        return tp in self.stored and self.stored[tp] < high
