"""What the two SQL ledgers (SQLite, PostgreSQL) share: one session at a time on one connection,
the tuning they are built with, when a prune is due, and closing.

A SQL ledger's session is one transaction on the ledger's connection, so a second session could
only interleave with the first one's statements: `session()` refuses it. Its claim rows are the
done marks once the transaction commits, so `mark_done` writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import ClassVar, Generic, Protocol, TypeVar

from worker.ledger._common import PRUNE_CHUNKS_PER_CALL, LazySavepoint, SessionBase


class SqlSession(SessionBase):
    """A SQL ledger's session (see the module docstring); its savepoint is made on first use."""

    def __init__(self) -> None:
        super().__init__()
        self._savepoint: LazySavepoint | None = None

    def _store_mark_done(self, keys: list[str]) -> None:
        # The claim row is the done mark once the transaction commits: nothing to write.
        return None


class _Connection(Protocol):
    def close(self) -> None: ...


SessionT = TypeVar("SessionT", bound=SqlSession)
ConnectionT = TypeVar("ConnectionT", bound=_Connection)


class SqlLedger(Generic[SessionT, ConnectionT]):
    """The part of a SQL ledger that is not about its store; a backend supplies
    `_new_session()` and opens `_conn`."""

    #: the store's name in messages ("SQLite", "PostgreSQL")
    kind: ClassVar[str]
    #: the driver's base exception (what closing a broken connection may raise)
    driver_error: ClassVar[type[Exception]]
    #: a session is one transaction on one connection: batches do not overlap
    concurrent_sessions = False

    def __init__(self, url: str, *, retention_seconds: float, lease_seconds: float,
                 prune_interval_seconds: float, prune_chunk: int,
                 clock: Callable[[], float]) -> None:
        self.url = url
        self.retention_seconds = float(retention_seconds)
        self.lease_seconds = float(lease_seconds)  # unused: SQL claims are transaction locks
        self.prune_interval_seconds = float(prune_interval_seconds)
        self.prune_chunk = int(prune_chunk)
        self._clock = clock
        self._last_prune = float("-inf")
        self._active: SessionT | None = None
        self._conn: ConnectionT | None = None

    def _new_session(self) -> SessionT:
        raise NotImplementedError

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with suppress(self.driver_error):
                self._conn.close()
            self._conn = None

    def _session_open(self) -> bool:
        return self._active is not None and not self._active._finished

    def _prune_cutoff(self) -> int | None:
        """The creation time (ms) below which done marks are pruned now, or None when no prune
        is due: a session is open, or the last one was less than the interval ago."""
        now = self._clock()
        if self._session_open() or now - self._last_prune < self.prune_interval_seconds:
            return None
        self._last_prune = now
        return int((now - self.retention_seconds) * 1000)

    def _prune_in_chunks(self, prune_oldest: Callable[[], int | None]) -> int:
        """Call `prune_oldest` (one short transaction deleting up to `prune_chunk` rows: how
        many it deleted, or None when it could not start) until a chunk comes back short, at
        most PRUNE_CHUNKS_PER_CALL times; the rows deleted in all."""
        total = 0
        for _ in range(PRUNE_CHUNKS_PER_CALL):
            n = prune_oldest()
            if n is None:
                break
            total += n
            if n < self.prune_chunk:
                break
        else:
            self._last_prune = float("-inf")  # more is due: prune again on the next call
        return total

    # -- Ledger -------------------------------------------------------------------------------
    def session(self) -> SessionT:
        if self._session_open():
            raise RuntimeError(f"a {self.kind} ledger runs one session at a time: commit or "
                               "roll back the open session first")
        self._active = self._new_session()
        return self._active

    def close(self) -> None:
        if self._active is not None and self._session_open():
            self._active.rollback()
        self._drop_connection()
