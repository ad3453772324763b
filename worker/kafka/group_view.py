"""The broker's view of a consumer group (worker.group_status.GroupStatus), read with an admin
client and, for the lag in time, a consumer that peeks at the next unconsumed record of each
lagging partition (assigned by hand: it joins no group and commits nothing).

Ends are counted as the worker reads (isolation.level=read_committed): a partition's `end` is
its last stable offset, so markers and aborted records are no lag; a last stable offset held
below the high watermark is a transaction left open upstream, reported with the timestamp of
its first record (the peek consumer reads uncommitted records for that).

`GroupInspector` keeps both clients between calls, so `status --watch` and the console's
refreshes reuse their connections; `close()` ends them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from worker.errors import WorkerError
from worker.group_status import Assigned, DlqDepth, GroupStatus, MemberStatus, PartitionStatus

__all__ = ["GroupInspector"]

Key = tuple[str, int]


class GroupInspector:
    def __init__(self, config: Mapping[str, Any], timeout: float = 10.0) -> None:
        from worker.kafka.config import CONSUMER_ONLY_PREFIXES

        self._config = {k: v for k, v in config.items()
                        if not k.startswith(CONSUMER_ONLY_PREFIXES) and not callable(v)}
        self._timeout = timeout
        self._admin: Any = None
        self._peeker: Any = None

    # -- the clients ---------------------------------------------------------------------------
    def _admin_client(self) -> Any:
        if self._admin is None:
            from worker.kafka.admin import checked_metadata
            from worker.kafka.clients import new_admin

            checked_metadata(self._config, self._timeout)  # a clear error when refused/absent
            self._admin = new_admin(self._config)
        return self._admin

    def _peek_consumer(self) -> Any:
        if self._peeker is None:
            from worker.kafka.clients import new_consumer

            self._peeker = new_consumer({
                **self._config, "group.id": "activity-worker-status-peek",
                "enable.auto.commit": False, "enable.auto.offset.store": False,
                "isolation.level": "read_uncommitted",  # to see an open transaction's start
                "enable.partition.eof": False, "fetch.max.bytes": 1024 * 1024,
                "max.partition.fetch.bytes": 64 * 1024}, "status reader")
        return self._peeker

    def close(self) -> None:
        if self._peeker is not None:
            self._peeker.close()
            self._peeker = None
        self._admin = None

    # -- the view ------------------------------------------------------------------------------
    def status(self, group: str, topics: Sequence[str] = (),
               dlq_topics: Sequence[str] | None = None, *, time_lag: bool = True) -> GroupStatus:
        """The group as the broker sees it now. `topics`: the group's topics to show (default:
        every topic it committed to or is assigned); `dlq_topics`: default each topic + '.dlq'.
        `time_lag=False` skips reading the next record of each lagging partition."""
        from worker.kafka.dead_letter_producer import default_dlq_topic

        admin = self._admin_client()
        desc = self._describe(admin, group)
        committed = self._committed(admin, group)
        protocol = _name(getattr(desc, "type", None) or "unknown")
        members = [MemberStatus(
            member_id=m.member_id, client_id=m.client_id, host=m.host,
            instance_id=m.group_instance_id or None, partitions=_assigned(m.assignment),
            target=_assigned(getattr(m, "target_assignment", None))
            if protocol == CONSUMER_PROTOCOL else None)
            for m in (desc.members if desc is not None else [])]
        owners = {(a.topic, a.partition): m.member_id for m in members for a in m.partitions}
        names = list(topics) or sorted({t for t, _ in committed} | {t for t, _ in owners})
        dlq_names = list(dlq_topics) if dlq_topics is not None else [
            default_dlq_topic(t) for t in names]
        md = admin.list_topics(timeout=self._timeout).topics
        missing = [t for t in names if t not in md]
        if missing:
            raise WorkerError(f"topic(s) {', '.join(missing)} do not exist on "
                              f"{self._config.get('bootstrap.servers')}; check --topic")
        keys = [(t, p) for t in names for p in sorted(md[t].partitions)]
        dlq_keys = [(t, p) for t in dlq_names if t in md for p in sorted(md[t].partitions)]
        starts, ends, highs = self._watermarks(admin, keys + dlq_keys)
        positions = {k: committed[k] if k in committed else starts[k] for k in keys}
        lags = {k: max(0, ends[k] - positions[k]) for k in keys}
        held = [k for k in keys if highs[k] > ends[k]]  # an open transaction at the end
        stamps = self._next_timestamps([(k, positions[k]) for k in keys if lags[k] > 0]) \
            if time_lag else {}
        opened = self._next_timestamps([(k, ends[k]) for k in held])
        now = time.time()
        partitions = [PartitionStatus(
            topic=t, partition=p, committed=committed.get((t, p)), start=starts[(t, p)],
            end=ends[(t, p)], lag=lags[(t, p)], next_timestamp=stamps.get((t, p)),
            lag_seconds=(0.0 if lags[(t, p)] == 0 else
                         max(0.0, now - stamps[(t, p)]) if (t, p) in stamps else None),
            member_id=owners.get((t, p)), high_watermark=highs[(t, p)],
            open_transaction_since=opened.get((t, p), now) if (t, p) in held else None)
            for t, p in keys]
        dlq = [DlqDepth(t, t in md, sum(highs[k] - starts[k] for k in dlq_keys if k[0] == t))
               for t in dlq_names]
        return GroupStatus(
            group=group, state=_state(desc, protocol, members), protocol=protocol,
            assignor=(desc.partition_assignor if desc is not None else "") or "",
            coordinator=desc.coordinator.id if desc is not None and desc.coordinator else None,
            members=members, partitions=partitions, dlq=dlq, taken_at=now)

    def _describe(self, admin: Any, group: str) -> Any:
        from confluent_kafka import KafkaError, KafkaException

        fut = admin.describe_consumer_groups([group], request_timeout=self._timeout)[group]
        try:
            return fut.result(self._timeout)
        except KafkaException as exc:  # KIP-848 brokers answer an unknown group so
            if exc.args and exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return None
            raise WorkerError(f"could not describe group {group!r}: {exc}") from None

    def _committed(self, admin: Any, group: str) -> dict[Key, int]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                request_timeout=self._timeout)[group]
        try:
            result = fut.result(self._timeout)
        except Exception as exc:
            raise WorkerError(f"could not read the committed offsets of {group!r}: "
                              f"{exc}") from None
        return {(tp.topic, tp.partition): int(tp.offset) for tp in result.topic_partitions
                if tp.offset >= 0}

    def _watermarks(self, admin: Any, keys: Iterable[Key]
                    ) -> tuple[dict[Key, int], dict[Key, int], dict[Key, int]]:
        """The first offsets, the last stable offsets (the end under read_committed) and the
        high watermarks."""
        from confluent_kafka import IsolationLevel, TopicPartition
        from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

        out: list[dict[Key, int]] = []
        keys = list(keys)
        for spec, isolation in (
                (OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED),  # type: ignore[no-untyped-call]
                (OffsetSpec.latest(), IsolationLevel.READ_COMMITTED),  # type: ignore[no-untyped-call]
                (OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED)):  # type: ignore[no-untyped-call]
            if not keys:
                out.append({})
                continue
            futures = admin.list_offsets({TopicPartition(t, p): spec for t, p in keys},
                                         isolation_level=isolation,
                                         request_timeout=self._timeout)
            try:
                out.append({(tp.topic, tp.partition): int(f.result(self._timeout).offset)
                            for tp, f in futures.items()})
            except Exception as exc:
                raise WorkerError(f"could not read the end offsets: {exc}") from None
        return out[0], out[1], out[2]

    def _next_timestamps(self, at: list[tuple[Key, int]]) -> dict[Key, float]:
        """The timestamp (epoch seconds) of the record at each offset, or the next one that
        exists; partitions not answered within the timeout are left out."""
        if not at:
            return {}
        from confluent_kafka import TopicPartition

        consumer = self._peek_consumer()
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in at])
        wanted = {key for key, _ in at}
        found: dict[Key, float] = {}
        deadline = time.monotonic() + min(self._timeout, 5.0)
        try:
            while wanted - found.keys() and time.monotonic() < deadline:
                for msg in consumer.consume(500, 0.2):
                    key = (msg.topic(), msg.partition())
                    if msg.error() is None and key in wanted and key not in found:
                        found[key] = msg.timestamp()[1] / 1000.0
        finally:
            consumer.unassign()
        return found


#: `GroupStatus.protocol` of a KIP-848 group (confluent-kafka's ConsumerGroupType.CONSUMER).
CONSUMER_PROTOCOL = "consumer"


def _assigned(assignment: Any) -> list[Assigned]:
    return [Assigned(t, p) for t, p in sorted(
        (tp.topic, tp.partition)
        for tp in (assignment.topic_partitions if assignment is not None else []))]


def _state(desc: Any, protocol: str, members: Sequence[MemberStatus]) -> str:
    """The group's state. librdkafka knows only the classic protocol's states and reports a
    consumer-protocol group that is assigning or reconciling as UNKNOWN: that is told apart
    here from the members' assignments (reconciling: some member does not hold its target yet;
    assigning: the broker is computing a new target)."""
    if desc is None:
        return "dead"
    state = _name(desc.state)
    if protocol == CONSUMER_PROTOCOL and state == "unknown" and members:
        return "reconciling" if any(m.in_flight for m in members) else "assigning"
    return state


def _name(value: Any) -> str:
    """An enum of confluent-kafka (ConsumerGroupState.STABLE) as 'stable'."""
    return str(getattr(value, "name", value)).lower()
