"""`redis://[:password@]host:port/db` — a shared ledger of leases and done marks.

A claim is `SET key <session token> NX PX <lease>` for every key of the batch in one Lua script
(one round trip): set means NEW, an existing done mark means DONE, another session's lease means
BUSY. `mark_done` overwrites the keys with a done mark that expires after the retention age;
`release` deletes only leases that still carry this session's token. A crashed worker's leases
expire after `lease_seconds` and another worker may then claim (and redo) those effects.

Redis must persist (AOF, `appendonly yes`), or a restart forgets the done marks. All keys of a
batch go to one script call, so Redis Cluster is not supported.

URL options (removed before connecting): `?prefix=activity-worker:ledger:`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.errors import LedgerUnavailable
from worker.ledger._common import SessionBase, redacted_url, split_options, stored_key
from worker.ledger.base import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_RETENTION_SECONDS,
    ClaimState,
)

_DONE = b"done"

# KEYS: the batch; ARGV[1]: session token, ARGV[2]: lease ms. Returns a ClaimState per key.
_CLAIM = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[i] = 0
  elseif redis.call('GET', key) == 'done' then
    out[i] = 1
  else
    out[i] = 2
  end
end
return out
"""

# KEYS: the batch; ARGV[1]: retention ms.
_MARK_DONE = """
for _, key in ipairs(KEYS) do
  redis.call('SET', key, 'done', 'PX', ARGV[1])
end
return #KEYS
"""

# KEYS: the batch; ARGV[1]: session token. Deletes only our own leases.
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    n = n + redis.call('DEL', key)
  end
end
return n
"""

_STATES = (ClaimState.NEW, ClaimState.DONE, ClaimState.BUSY)


class RedisLedger:
    # Sessions may run side by side (several batches in flight): worker.processing.batch_window.
    concurrent_sessions = True

    def __init__(self, url: str, *, retention_seconds: float = DEFAULT_RETENTION_SECONDS,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, socket_timeout: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        parts, opts = split_options(url, ("prefix",))
        self.url = url
        self._safe_url = redacted_url(url)
        self.prefix = opts.get("prefix", "activity-worker:ledger:")
        self.retention_ms = max(1, int(retention_seconds * 1000))
        self.lease_ms = max(1, int(lease_seconds * 1000))
        # One immediate retry re-dials a pooled connection that a server restart broke; a
        # server that stays down surfaces as LedgerUnavailable at once.
        self._client: redis_lib.Redis[bytes] = redis_lib.Redis.from_url(
            parts.geturl(), socket_timeout=socket_timeout,
            socket_connect_timeout=min(socket_timeout, 2.0), retry=Retry(NoBackoff(), 1),
            health_check_interval=0)
        self._claim = self._client.register_script(_CLAIM)
        self._mark_done = self._client.register_script(_MARK_DONE)
        self._release = self._client.register_script(_RELEASE)

    def _unavailable(self, exc: BaseException, doing: str) -> LedgerUnavailable:
        return LedgerUnavailable(
            f"Redis ledger at {self._safe_url} failed while {doing} "
            f"({type(exc).__name__}: {exc}): check that the server is running and reachable "
            "and the URL (password, db) is right.")

    def _run(self, script: Any, keys: list[str], args: list[Any], doing: str) -> Any:
        prefix = self.prefix
        try:
            return script(keys=[prefix + stored_key(k) for k in keys], args=args)
        except redis_lib.RedisError as exc:
            raise self._unavailable(exc, doing) from exc

    def session(self) -> RedisSession:
        return RedisSession(self)

    def ping(self) -> None:
        try:
            self._client.ping()
        except redis_lib.RedisError as exc:
            raise self._unavailable(exc, "pinging") from exc

    def prune(self) -> int:
        """Redis expires done marks and leases itself (PX): nothing to do."""
        return 0

    def close(self) -> None:
        self._client.close()


class RedisSession(SessionBase):
    def __init__(self, ledger: RedisLedger) -> None:
        super().__init__()
        self._ledger = ledger
        self._token = "lease:" + uuid.uuid4().hex

    def _store_claim(self, keys: list[str]) -> list[ClaimState]:
        raw = self._ledger._run(self._ledger._claim, keys, [self._token, self._ledger.lease_ms],
                                "claiming keys")
        return [_STATES[int(v)] for v in raw]

    def _store_mark_done(self, keys: list[str]) -> None:
        self._ledger._run(self._ledger._mark_done, keys, [self._ledger.retention_ms],
                          "marking keys done")

    def _store_release(self, keys: list[str]) -> None:
        self._ledger._run(self._ledger._release, keys, [self._token], "releasing keys")

    def _store_commit(self, leftover: list[str]) -> None:
        if leftover:
            self._store_release(leftover)

    def _store_rollback(self, claimed: list[str]) -> None:
        if claimed:
            with suppress(LedgerUnavailable):  # if unreachable, the leases expire on their own
                self._store_release(claimed)
