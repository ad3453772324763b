"""The consumer port: everything the engine asks of a Kafka consumer, in the worker's own terms
(partitions are `(topic, partition)` tuples, errors are `ClientError`s), so the engine imports
no client library. Two implementations:

- `worker.kafka.confluent_consumer.ConfluentConsumer`: confluent-kafka / librdkafka;
- `worker.engine.inmemory.InMemoryBroker.consumer()`: partitions, offsets and a consumer group
  in memory, for fast tests of the engine's offset, rebalance and shutdown rules.

Callbacks (`ConsumerListener`) run on the thread that calls `consume`, `poll` or `close`, as
librdkafka runs them: a rebalance happens between two of the engine's own calls, never beside
them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from worker.types import TP


@dataclass(frozen=True, slots=True)
class ClientError:
    """An error the client reported outside any call (librdkafka's error callback), or attached
    to a consumed message. `settings_problem` is the operator-facing sentence when the error
    means the connection settings are wrong (credentials, certificates); `kind` names it."""

    text: str
    fatal: bool = False
    all_brokers_down: bool = False
    end_of_partition: bool = False
    settings_problem: str | None = None
    kind: str | None = None


class CommitFailed(Exception):
    """A synchronous commit the broker refused or did not answer."""


class ConsumerListener(Protocol):
    """What the engine is told; every method runs inside one of the port's calls."""

    def on_assign(self, partitions: list[TP]) -> None: ...
    def on_revoke(self, partitions: list[TP]) -> None: ...
    def on_lost(self, partitions: list[TP]) -> None: ...
    def on_commit(self, committed: list[tuple[TP, int]], *, asynchronous: bool) -> None:
        """The broker confirmed a commit (an asynchronous one that found nothing to commit
        confirms an empty list)."""

    def on_commit_failed(self, error: str) -> None:
        """An asynchronous commit failed (refused, timed out, no coordinator); its offsets are
        still stored. A synchronous one raises CommitFailed instead."""

    def on_error(self, error: ClientError) -> None: ...


class ConsumerPort(Protocol):
    """A group member reading topics with manual offset storage (`enable.auto.offset.store`
    off): an offset is stored by `store` and committed by `commit`, never by reading."""

    def open(self, listener: ConsumerListener, *, interleave_partitions: bool = False) -> None:
        """Create the client; the listener gets every callback from now on.

        `interleave_partitions`: the engine overlaps batches (worker.types.BatchWindow), so the
        order messages arrive in decides which ordering keys get work: fetch little per
        partition at a time, so that every partition's keys are in each batch."""

    def settings(self) -> dict[str, Any]:
        """The client's settings with secrets redacted (for the start-up log line)."""

    def subscribe(self, topics: Sequence[str]) -> None: ...

    def consume(self, n: int, timeout: float) -> list[Any]:
        """Up to `n` messages (worker.types.Message plus `error()`), waiting up to `timeout`."""

    def poll(self) -> Any | None:
        """One fetched message or None, without waiting (serves callbacks)."""

    def message_error(self, message: Any) -> ClientError | None:
        """The error a consumed message carries, or None for a record."""

    def pause(self, partitions: Collection[TP]) -> None: ...
    def resume(self, partitions: Collection[TP]) -> None: ...
    def seek(self, tp: TP, offset: int) -> None:
        """Read `tp` from `offset` next; raises CommitFailed-like errors as RuntimeError."""

    def store(self, offsets: Sequence[tuple[TP, int]]) -> None:
        """Mark these offsets (next to read) as what the next commit sends."""

    def commit(self, offsets: Sequence[tuple[TP, int]] | None = None, *,
               asynchronous: bool) -> list[tuple[TP, int]]:
        """Commit the stored offsets (or exactly `offsets`). Synchronous: returns what the broker
        confirmed (also reported to `on_commit`), raises CommitFailed. Asynchronous: returns []
        and reports exactly once, through `on_commit` or `on_commit_failed`, during a later
        call. Nothing stored: returns [] (and, asynchronously, reports an empty `on_commit`)."""

    def positions(self, partitions: Collection[TP]) -> dict[TP, int]:
        """The client's position per partition: one past the last record it handed over or
        the last record it skipped without handing it over (a transaction marker, an aborted
        transaction's record under read_committed); negative when unknown. Asks no broker."""

    def member_id(self) -> str:
        """The group member id; empty until the member has joined."""

    def group_metadata(self) -> Any:
        """The consumer's group metadata (generation, member id, instance id) as the client
        hands it to a transactional producer's send_offsets_to_transaction (exactly-once mode,
        worker.engine.transactions); opaque to the engine."""

    def reachable(self, topic: str, timeout: float) -> bool:
        """True if a broker answers a metadata request for `topic` within `timeout`."""

    def partitions_of(self, topics: Sequence[str]) -> list[TP]:
        """Every partition of `topics`; WorkerError if one does not exist."""

    def watermarks(self, partitions: Collection[TP], *, cached: bool = False
                   ) -> dict[TP, tuple[int, int]]:
        """(low, high) per partition; `cached` asks no broker (values from recent fetches)."""

    def stable_offsets(self, partitions: Collection[TP]) -> dict[TP, tuple[int, int]]:
        """(last stable offset, high watermark) per partition as the client's latest fetches
        saw them; asks no broker; partitions not known yet are left out. Under read_committed
        nothing at or past the last stable offset can be read: a transaction is open there."""

    def committed(self, partitions: Collection[TP], timeout: float) -> dict[TP, int]:
        """The group's committed offset per partition (negative: none); CommitFailed if the
        broker does not answer."""

    def close(self) -> None:
        """Leave the group (the revoke callback runs first) and release the client."""
