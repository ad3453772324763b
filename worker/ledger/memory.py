"""`memory://` — an in-process ledger for tests and stateless processors.

Bounded two ways: by count (`memory://?max_keys=100000`) and by age (done marks expire after the
retention age, leases after the lease age). Nothing survives a restart, and an evicted done mark
lets a duplicate through: use a durable backend for effects that must happen once across
restarts.

The count bound is an approximate LRU in two generations (plain dicts): keys go into the young
generation; when it holds `max_keys / 2` keys it becomes the old one and the previous old one is
dropped at once; a key used again while old moves back to the young one. So the
`max_keys / 2` most recently used keys are always kept and never more than `max_keys` are
held. (An exact LRU on an OrderedDict cost twice as much per key, in the engine's hot path.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from itertools import islice

from worker.errors import ConfigError
from worker.ledger._common import BUSY, DONE, NEW, SessionBase, split_options
from worker.ledger.base import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_PRUNE_INTERVAL_SECONDS,
    DEFAULT_RETENTION_SECONDS,
    ClaimState,
)

_DONE: None = None  # owner of a done mark
_Entry = tuple[float, str | None]  # (expires_at, owner token or None for a done mark)


class MemoryLedger:
    # Sessions may run side by side (several batches in flight): worker.processing.batch_window.
    concurrent_sessions = True

    def __init__(self, url: str = "memory://", *,
                 retention_seconds: float = DEFAULT_RETENTION_SECONDS,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, max_keys: int | None = None,
                 prune_interval_seconds: float = DEFAULT_PRUNE_INTERVAL_SECONDS,
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
        self._half = max(1, max_keys // 2)
        self._young: dict[str, _Entry] = {}
        self._old: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

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
        dropped = 0
        with self._lock:
            for gen in (self._young, self._old):
                expired = [k for k, (exp, _) in gen.items() if exp <= now]
                for k in expired:
                    del gen[k]
                dropped += len(expired)
        return dropped

    def close(self) -> None:
        with self._lock:
            self._young.clear()
            self._old.clear()

    # -- used by MemorySession ----------------------------------------------------------------
    def _claim(self, keys: list[str], token: str) -> list[ClaimState]:
        now = self._clock()
        lease = (now + self.lease_seconds, token)
        with self._lock:
            young = self._young
            if young.keys().isdisjoint(keys) and self._old.keys().isdisjoint(keys):
                # The usual case, only new keys (unique, see SessionBase): one C-speed update.
                young.update(dict.fromkeys(keys, lease))
                out = [NEW] * len(keys)
            else:
                out = self._claim_each(keys, lease, now)
            self._bound()
        return out

    def _claim_each(self, keys: list[str], lease: _Entry, now: float) -> list[ClaimState]:
        young, old = self._young, self._old
        out: list[ClaimState] = []
        add = out.append
        for key in keys:
            entry = young.pop(key, None)
            if entry is None:
                entry = old.pop(key, None)
            if entry is None or entry[0] <= now:  # new, or expired: ours now
                young[key] = lease
                add(NEW)
            else:
                young[key] = entry  # used again: the most recently used end
                add(DONE if entry[1] is _DONE else BUSY)
        return out

    def _bound(self) -> None:
        """Rotate the generations; never hold more than max_keys."""
        young = self._young
        if len(young) >= self._half:
            self._old, self._young = young, {}
        excess = len(self._young) + len(self._old) - self.max_keys
        if excess > 0:  # only when one batch brought more than max_keys / 2 keys
            old = self._old
            for key in list(islice(old, excess)):
                del old[key]

    def _mark_done(self, keys: list[str]) -> None:
        mark = (self._clock() + self.retention_seconds, _DONE)
        with self._lock:
            young, old = self._young, self._old
            # Claimed moments ago, so (nearly always) young still: one C-speed update.
            if old.keys().isdisjoint(keys):
                young.update(dict.fromkeys(keys, mark))
            else:
                for key in keys:
                    old.pop(key, None)
                    young[key] = mark
            self._bound()

    def _release(self, keys: list[str], token: str) -> None:
        with self._lock:
            for gen in (self._young, self._old):
                for key in keys:
                    entry = gen.get(key)
                    if entry is not None and entry[1] == token:
                        del gen[key]


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
