"""Idempotency ledgers. `open_ledger(url)` picks the backend from the URL scheme.

    sqlite:///relative/path.db, sqlite:////absolute/path.db   embedded, the default
    memory://?max_keys=100000                                 in-process, bounded LRU
    redis://[:password@]host:port/db                          shared leases + done marks
    postgresql://user[:password]@host:port/db                 shared, transactional

See docs/ledger.md for what each one guarantees.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from worker.errors import ConfigError
from worker.ledger._common import redacted_url
from worker.ledger.base import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_PRUNE_INTERVAL_SECONDS,
    DEFAULT_RETENTION_SECONDS,
    ClaimState,
    Ledger,
    LedgerSession,
)

__all__ = ["DEFAULT_LEASE_SECONDS", "DEFAULT_RETENTION_SECONDS", "ClaimState", "Ledger",
           "LedgerSession", "open_ledger", "redacted_url"]


def open_ledger(url: str, *, retention_seconds: float = DEFAULT_RETENTION_SECONDS,
                lease_seconds: float = DEFAULT_LEASE_SECONDS,
                prune_interval_seconds: float = DEFAULT_PRUNE_INTERVAL_SECONDS,
                clock: Callable[[], float] = time.time) -> Ledger:
    """Build the ledger for `url`. Validates the URL and settings (ConfigError) but does not
    contact the store: call `ping()` to check it is reachable (LedgerUnavailable if not).

    `lease_seconds` bounds how long a claimed key of a crashed worker stays BUSY on Redis and
    memory; it must cover a whole batch. `clock` is for tests (age-based expiry and pruning)."""
    if retention_seconds <= 0 or lease_seconds <= 0:
        raise ConfigError("ledger retention and lease must be positive numbers of seconds.")
    if lease_seconds >= retention_seconds:
        raise ConfigError(f"ledger lease ({lease_seconds:g} s) must be shorter than its "
                          f"retention ({retention_seconds:g} s).")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme == "memory":
        from worker.ledger.memory import MemoryLedger

        return MemoryLedger(url, retention_seconds=retention_seconds,
                            lease_seconds=lease_seconds,
                            prune_interval_seconds=prune_interval_seconds, clock=clock)
    if scheme == "sqlite":
        from worker.ledger.sqlite import SqliteLedger

        return SqliteLedger(url, retention_seconds=retention_seconds,
                            lease_seconds=lease_seconds,
                            prune_interval_seconds=prune_interval_seconds, clock=clock)
    if scheme in ("redis", "rediss", "unix"):
        from worker.ledger.redis import RedisLedger

        return RedisLedger(url, retention_seconds=retention_seconds,
                           lease_seconds=lease_seconds, clock=clock)
    if scheme in ("postgresql", "postgres"):
        from worker.ledger.postgres import PostgresLedger

        return PostgresLedger(url, retention_seconds=retention_seconds,
                              lease_seconds=lease_seconds,
                              prune_interval_seconds=prune_interval_seconds, clock=clock)
    raise ConfigError(f"unsupported ledger URL {redacted_url(url)!r}: use sqlite:///path.db, "
                      "memory://, redis://host:port/db or postgresql://user@host:port/db.")
