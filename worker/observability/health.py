"""Liveness and readiness of the worker, as the HTTP endpoints `/healthz` and `/readyz` report them.

It is one of the engine's observers (worker.observer): the poll loop calls `heartbeat()` on every
iteration and `record_traffic()` when a poll returned messages; the commit path calls
`record_commit_advance()` when a committed offset moved forward. Each of these is one clock read
and an attribute store, cheap enough for every iteration. Whether the ledger answers is read
from the pipeline when asked (`watch_ledger`).

- live: the poll loop ran within `poll_stale_after` seconds, and, if messages arrived since the
  last commit advance, a commit advanced within `commit_stall_after` seconds of the first of them.
  An idle worker (no traffic) stays live however old its last commit is, and so does one whose
  commits wait for an unavailable destination (`watch_destinations`): a restart would not
  bring the destination back, only hammer it again.
- ready: connected to Kafka, the ledger reachable and dead letters writable; not "has partitions"
  (a replica beyond the partition count is ready: `details()` says how many it has).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from worker.observer import WorkerObserver

__all__ = ["DEFAULT_COMMIT_STALL_AFTER", "DEFAULT_POLL_STALE_AFTER", "HealthState"]

# The liveness bounds' defaults (--liveness-poll-stale, --liveness-commit-stall).
DEFAULT_POLL_STALE_AFTER = 30.0
DEFAULT_COMMIT_STALL_AFTER = 300.0


class HealthState(WorkerObserver):
    def __init__(self, poll_stale_after: float = DEFAULT_POLL_STALE_AFTER,
                 commit_stall_after: float = DEFAULT_COMMIT_STALL_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if poll_stale_after <= 0 or commit_stall_after <= 0:
            raise ValueError("health bounds must be positive numbers of seconds")
        self.poll_stale_after = poll_stale_after
        self.commit_stall_after = commit_stall_after
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        # The start counts as a heartbeat, so a worker that is still connecting is live.
        self._last_heartbeat = now
        self._last_commit_advance: float | None = None
        self._pending_since: float | None = None  # first traffic not yet covered by a commit
        self._connected = False
        self._assigned = 0
        self._ledger_ok: Callable[[], bool] = lambda: False
        self._dlq_ok = True
        self._waiting_on_destination: Callable[[], bool] = lambda: False

    # -- called by the worker ----------------------------------------------------------------
    def heartbeat(self) -> None:
        self._last_heartbeat = self._clock()

    def record_traffic(self) -> None:
        if self._pending_since is None:
            with self._lock:
                if self._pending_since is None:
                    self._pending_since = self._clock()

    def record_commit_advance(self) -> None:
        with self._lock:
            self._last_commit_advance = self._clock()
            self._pending_since = None

    def set_connected(self, connected: bool) -> None:
        self._connected = connected

    def set_assigned(self, count: int) -> None:
        self._assigned = count

    def set_ledger_ok(self, ok: bool) -> None:
        self._ledger_ok = lambda: ok

    def watch_ledger(self, ok: Callable[[], bool]) -> None:
        """Ask `ok()` (the pipeline's `ledger_up`) at each readiness check."""
        self._ledger_ok = ok

    def watch_destinations(self, waiting: Callable[[], bool]) -> None:
        """Ask `waiting()` (worker.processing.circuit.Circuits.waiting: some destination is down)
        before
        failing liveness for commits that stopped advancing."""
        self._waiting_on_destination = waiting

    def set_dlq_writable(self, ok: bool) -> None:
        self._dlq_ok = ok

    # -- read by the HTTP endpoints ------------------------------------------------------------
    def liveness(self) -> tuple[bool, list[str]]:
        now = self._clock()
        reasons: list[str] = []
        idle = now - self._last_heartbeat
        if idle > self.poll_stale_after:
            reasons.append(f"poll loop has not run for {idle:.1f}s "
                           f"(bound {self.poll_stale_after:g}s)")
        with self._lock:
            pending = self._pending_since
        if pending is not None and now - pending > self.commit_stall_after and \
                not self._waiting_on_destination():
            reasons.append(f"messages consumed {now - pending:.1f}s ago and no commit has "
                           f"advanced since (bound {self.commit_stall_after:g}s)")
        return (not reasons, reasons)

    def details(self) -> dict[str, int]:
        """Shown in the `/readyz` body, not part of the verdict: a consumer without partitions
        (a replica beyond the partition count, one waiting for its share) is ready — nothing
        routes traffic to it, and a PodDisruptionBudget must be able to count it."""
        return {"assigned_partitions": self._assigned}

    def readiness(self) -> tuple[bool, list[str]]:
        reasons: list[str] = []
        if not self._connected:
            reasons.append("not connected to Kafka")
        if not self._ledger_ok():
            reasons.append("ledger unreachable")
        if not self._dlq_ok:
            reasons.append("dead letters cannot be written (consumption paused)")
        return (not reasons, reasons)
