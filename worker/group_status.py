"""What the broker says about a consumer group, as plain values: its state and protocol, each
member and its partitions, per partition the committed and end offsets and the lag in events and
in time, and the dead-letter topics' depth. `activity-worker status` prints it and the console
shows it; worker.kafka.group_view reads it from the broker.

`GroupStatus` round-trips through JSON (`to_json` / `from_json`): what `status --json` prints
and the `group` part of the console's `/status.json`."""

from __future__ import annotations

import time
from enum import IntEnum

import msgspec

__all__ = ["Assigned", "DlqDepth", "GroupStatus", "MemberStatus", "PartitionStatus",
           "StatusExit", "format_age", "from_json", "open_transactions", "problems", "to_json"]


class StatusExit(IntEnum):
    """`activity-worker status`'s exit codes (1 and 2 are the CLI's own: no broker answered,
    bad settings)."""

    OK = 0
    UNHEALTHY = 3  # no members, or a lag above --max-lag / --max-lag-seconds


class Assigned(msgspec.Struct, frozen=True):
    topic: str
    partition: int


class MemberStatus(msgspec.Struct, frozen=True):
    member_id: str
    client_id: str
    host: str
    instance_id: str | None  # static membership (group.instance.id)
    partitions: list[Assigned]  # what it holds now
    # Consumer-protocol (KIP-848) groups: what the broker's assignor wants it to hold; it
    # differs from `partitions` while the member revokes or takes partitions. None: a classic
    # group, which has no target.
    target: list[Assigned] | None = None

    @property
    def in_flight(self) -> bool:
        """Whether its partitions are still moving towards its target (KIP-848 only)."""
        return self.target is not None and sorted(self.target, key=_order) != sorted(
            self.partitions, key=_order)

    @property
    def held_text(self) -> str:
        """Its partitions as `topic[0], topic[1]` ('-' for none)."""
        return _listed(self.partitions)

    @property
    def target_text(self) -> str:
        """Its target as `held_text` shows partitions: 'same' when nothing moves, '-' in a
        classic group."""
        if self.target is None:
            return "-"
        return _listed(self.target) if self.in_flight else "same"


def _order(a: Assigned) -> tuple[str, int]:
    return (a.topic, a.partition)


def _listed(partitions: list[Assigned]) -> str:
    return ", ".join(f"{a.topic}[{a.partition}]" for a in partitions) or "-"


class PartitionStatus(msgspec.Struct, frozen=True):
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    start: int             # the first offset still retained
    end: int               # the end the group can read: the last stable offset (read_committed)
    lag: int               # offsets between the group's position and the end
    next_timestamp: float | None  # epoch seconds of the next unconsumed record, when read
    lag_seconds: float | None     # now minus that timestamp; 0 without lag; None: unknown
    member_id: str | None  # who holds it now
    high_watermark: int | None = None  # the offset the next record will get
    # epoch seconds of the first record of a transaction left open at `end` (None: none open);
    # nothing past it can be read until that transaction commits or aborts
    open_transaction_since: float | None = None


class DlqDepth(msgspec.Struct, frozen=True):
    topic: str
    exists: bool
    depth: int  # letters retained (end minus start offsets, summed over partitions)


class GroupStatus(msgspec.Struct, frozen=True):
    group: str
    # stable, empty, dead (unknown group); classic groups: preparing_rebalance,
    # completing_rebalance; consumer-protocol groups: assigning, reconciling
    state: str
    protocol: str   # classic or consumer (KIP-848)
    assignor: str
    coordinator: int | None
    members: list[MemberStatus]
    partitions: list[PartitionStatus]
    dlq: list[DlqDepth]
    taken_at: float  # epoch seconds

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def max_lag_seconds(self) -> float | None:
        known = [p.lag_seconds for p in self.partitions if p.lag_seconds is not None]
        return max(known) if known else None

    def owner(self, member_id: str | None) -> MemberStatus | None:
        return next((m for m in self.members if m.member_id == member_id), None)


def to_json(status: GroupStatus) -> bytes:
    return msgspec.json.encode(status)


def from_json(data: bytes | str) -> GroupStatus:
    return msgspec.json.decode(data, type=GroupStatus)


def problems(status: GroupStatus, max_lag: int | None = None,
             max_lag_seconds: float | None = None) -> list[str]:
    """Why the group is not healthy, one sentence each (empty: healthy)."""
    out: list[str] = []
    if not status.members:
        out.append(f"group {status.group!r} has no members (state {status.state}): no worker "
                   "is consuming")
    for p in status.partitions:
        if max_lag is not None and p.lag > max_lag:
            out.append(f"{p.topic}[{p.partition}] lags {p.lag} events (limit {max_lag})")
        if max_lag_seconds is not None and (p.lag_seconds or 0) > max_lag_seconds:
            out.append(f"{p.topic}[{p.partition}] lags {p.lag_seconds:.1f}s "
                       f"(limit {max_lag_seconds:g}s)")
    return out


def open_transactions(status: GroupStatus) -> list[str]:
    """Partitions held by a transaction left open upstream, one sentence each: not lag (the
    group has read all it can), but nothing more can be read there until it ends."""
    return [f"an open transaction holds {p.topic}[{p.partition}] at offset {p.end} since "
            f"{time.strftime('%H:%M:%S', time.localtime(p.open_transaction_since))} "
            f"({format_age(max(0.0, status.taken_at - p.open_transaction_since))}): "
            f"{(p.high_watermark or p.end) - p.end} offsets wait for it to commit or abort"
            for p in status.partitions if p.open_transaction_since is not None]


def format_age(seconds: float | None) -> str:
    """12.3s, 4m05s, 2h10m; '?' when unknown."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
