"""`memory://` — an in-process ledger for tests and stateless processors.

Bounded two ways: by count (`memory://?max_keys=100000`, least recently used keys are evicted
first) and by age (done marks expire after the retention age, leases after the lease age).
Nothing survives a restart, and an evicted done mark lets a duplicate through: use a durable
backend for effects that must happen once across restarts.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from worker.errors import ConfigError
from worker.ledger._common import BUSY, DONE, NEW, SessionBase, split_options
from worker.ledger.base import ClaimState

_DONE: None = None  # owner of a done mark


class MemoryLedger:
    def __init__(self, url: str = "memory://", *, retention_seconds: float = 7 * 86400,
                 lease_seconds: float = 120.0, max_keys: int | None = None,
                 prune_interval_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        _, opts = split_options(url, ("max_keys",))
        if max_keys is None:
            try:
                max_keys = int(opts.get("max_keys", "100000"))
            except ValueError:
                raise ConfigError(f"memory ledger: max_keys={opts['max_keys']!r} is not an "
                                  "integer; use e.g. memory://?max_keys=100000.") from None
        if max_keys < 1:
            raise ConfigError("memory ledger: max_keys must be at least 1.")
        self.url = url
        self.retention_seconds = float(retention_seconds)
        self.lease_seconds = float(lease_seconds)
        self.max_keys = max_keys
        self.prune_interval_seconds = float(prune_interval_seconds)
        self._last_prune = float("-inf")
        self._clock = clock
        # key -> (expires_at, owner token or None for a done mark); order = least recently used
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def session(self) -> MemorySession:
        return MemorySession(self)

    def ping(self) -> None:
        return None

    def prune(self) -> int:
        """Drop expired entries (a scan of all keys), at most once per prune interval."""
        now = self._clock()
        if now - self._last_prune < self.prune_interval_seconds:
            return 0
        self._last_prune = now
        with self._lock:
            expired = [k for k, (exp, _) in self._entries.items() if exp <= now]
            for k in expired:
                del self._entries[k]
        return len(expired)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()

    # -- used by MemorySession ----------------------------------------------------------------
    def _claim(self, keys: list[str], token: str) -> list[ClaimState]:
        now = self._clock()
        lease_until = now + self.lease_seconds
        entries = self._entries
        out: list[ClaimState] = []
        with self._lock:
            lease = (lease_until, token)
            add = out.append
            for key in keys:
                entry = entries.get(key)
                if entry is None:
                    entries[key] = lease  # a new key goes to the most recently used end
                    add(NEW)
                elif entry[0] > now:
                    entries.move_to_end(key)
                    add(DONE if entry[1] is _DONE else BUSY)
                else:
                    entries[key] = lease
                    entries.move_to_end(key)
                    add(NEW)
            while len(entries) > self.max_keys:
                entries.popitem(last=False)
        return out

    def _mark_done(self, keys: list[str]) -> None:
        until = self._clock() + self.retention_seconds
        entries = self._entries
        mark = (until, _DONE)
        with self._lock:
            for key in keys:
                # claimed moments ago, so already near the most recently used end: no move
                entries[key] = mark
            while len(entries) > self.max_keys:
                entries.popitem(last=False)

    def _release(self, keys: list[str], token: str) -> None:
        entries = self._entries
        with self._lock:
            for key in keys:
                entry = entries.get(key)
                if entry is not None and entry[1] == token:
                    del entries[key]


class MemorySession(SessionBase):
    def __init__(self, ledger: MemoryLedger) -> None:
        super().__init__()
        self._ledger = ledger
        self._token = uuid.uuid4().hex

    def _store_claim(self, keys: list[str]) -> list[ClaimState]:
        return self._ledger._claim(keys, self._token)

    def _store_mark_done(self, keys: list[str]) -> None:
        self._ledger._mark_done(keys)

    def _store_release(self, keys: list[str]) -> None:
        self._ledger._release(keys, self._token)

    def _store_commit(self, leftover: list[str]) -> None:
        if leftover:
            self._ledger._release(leftover, self._token)

    def _store_rollback(self, claimed: list[str]) -> None:
        if claimed:
            self._ledger._release(claimed, self._token)
