"""The idempotency ledger contract. Every backend (memory, sqlite, redis, postgresql) implements it.

The pipeline opens one `LedgerSession` per batch:

    session = ledger.session()
    states = session.claim(keys)          # one round trip for the whole batch
    for each key whose state is NEW:
        with session.savepoint():         # SQL: SAVEPOINT; a failed processor's writes roll back
            processor(event, ctx)         # ctx.transaction is session.transaction
        -> success: collect key           -> failure: session.release([key])
    session.mark_done(done_keys)          # one round trip
    session.commit()                      # SQL: effects and done marks commit together

Claim states:
- NEW:  this worker owns the key now and must run the effect.
- DONE: the effect already happened (a duplicate): skip it.
- BUSY: another worker holds an unexpired lease on it (its effect may be in flight). The
        pipeline waits with backoff and claims again; a crashed holder's lease expires.

On SQL ledgers the claim is a row written inside the batch transaction, so the claim, the
processor's writes through `session.transaction` and the done mark commit or vanish together
(kill -9 at any instant leaves both or neither). On Redis and memory the claim is a lease with
an expiry (`SET NX PX`) and `mark_done` replaces it with a done mark kept for the retention age.

Session rules, the same on every backend (see docs/ledger.md):
- a key repeated within one session (same `claim` call or a later one) is DONE from its second
  occurrence on: the first occurrence owns the effect;
- `mark_done` and `release` accept only keys this session claimed as NEW (else ValueError);
- `commit` releases claimed keys that were neither marked done nor released;
- `rollback` releases every key not marked done; on SQL ledgers the done marks roll back too,
  on Redis and memory they stay (their effects happened outside any transaction). It never
  raises, so it is safe after a LedgerUnavailable;
- a session is used once: after commit/rollback, open a new one (`ledger.session()`); SQL
  ledgers run one session at a time per Ledger object (they own one connection).

`open_ledger` does not contact the store; `ping()` does. Any backend error is raised as
`worker.errors.LedgerUnavailable`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

#: How long done marks are kept: longer than the 24 h webhook retry window and any sensible
#: Kafka replay. The one place these defaults are written (settings, CLI and backends use them).
DEFAULT_RETENTION_SECONDS = 7 * 86400.0
#: How long a crashed worker's claim blocks a key (Redis, memory); it must cover a whole batch.
DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_PRUNE_INTERVAL_SECONDS = 60.0


class ClaimState(enum.IntEnum):
    NEW = 0
    DONE = 1
    BUSY = 2


class LedgerSession(Protocol):
    @property
    def transaction(self) -> Any | None:
        """A DB-API connection inside the open transaction (SQL ledgers), else None."""

    def claim(self, keys: Sequence[str]) -> list[ClaimState]: ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Scope one processor call: its writes are rolled back if the block raises."""

    def mark_done(self, keys: Sequence[str]) -> None: ...

    def release(self, keys: Sequence[str]) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class Ledger(Protocol):
    url: str
    #: True when sessions may run at once from several threads (memory, Redis): the pipeline
    #: then overlaps batches (worker.processing.batch_window). A SQL ledger's session is one
    #: transaction at a time.
    concurrent_sessions: bool

    def session(self) -> LedgerSession: ...

    def ping(self) -> None:
        """Raise LedgerUnavailable if the store cannot be reached."""

    def prune(self) -> int:
        """Delete keys older than the retention age; return how many. Cheap to call often."""

    def close(self) -> None: ...
