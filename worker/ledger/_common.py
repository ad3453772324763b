"""What every backend shares: URL handling, error wrapping and the per-session bookkeeping.

`SessionBase` keeps the batch's own key sets in plain Python (no round trip) and leaves the
store-specific work to four hooks. Its rules, the same on every backend:
- a key repeated within one session (in the same `claim` call or a later one) is DONE from
  its second occurrence on: the first occurrence owns the effect;
- `mark_done` and `release` accept only keys this session claimed as NEW;
- `commit` releases claimed keys that were neither marked done nor released;
- `rollback` releases every key not marked done. On SQL ledgers it also drops the done marks
  (they roll back with the transaction); on Redis and memory done marks stay, because the
  effects they stand for have already happened outside any transaction.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from worker.errors import LedgerUnavailable
from worker.ledger.base import ClaimState

NEW = ClaimState.NEW
DONE = ClaimState.DONE
BUSY = ClaimState.BUSY

# A prune call deletes at most this many chunks (short transactions of `prune_chunk` rows);
# when it had to stop there, the next call prunes again instead of waiting for the interval.
# So pruning catches up batch by batch, a few ms at a time, never one long stall.
PRUNE_CHUNKS_PER_CALL = 10

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


#: Keys longer than this (characters), or holding a NUL, are stored as a digest: no backend then
#: has a key-size or character limit (PostgreSQL's btree rows stop at ~2.7 KB and its text holds
#: no NUL). Keys are built by `worker.processors.keys`; ids are bounded in the envelope too.
MAX_STORED_KEY = 200


def stored_key(key: str) -> str:
    """`key` as the store keeps it: itself when short and NUL-free, else `sha256:<hex>`."""
    if len(key) <= MAX_STORED_KEY and "\x00" not in key:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def redacted_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable ledger URL>"
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def split_options(url: str, known: Sequence[str]) -> tuple[SplitResult, dict[str, str]]:
    """Split the ledger's own query options (e.g. `table`) off `url`; other query parameters
    stay in the returned URL (for PostgreSQL they are libpq connection parameters)."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in known:
            ours[name] = value
        else:
            rest.append((name, value))
    return parts._replace(query=urlencode(rest, quote_via=quote)), ours  # libpq: no "+"


def check_identifier(name: str, what: str) -> str:
    if not _IDENT.match(name):
        from worker.errors import ConfigError

        raise ConfigError(f"ledger {what} {name!r} is not a plain SQL identifier: use letters, "
                          "digits and underscores only.")
    return name


class SessionBase:
    """Bookkeeping shared by all backends; subclasses implement the `_store_*` hooks."""

    def __init__(self) -> None:
        self._claimed: set[str] = set()   # NEW for us, not yet done or released
        self._done: set[str] = set()
        self._finished = False

    # -- hooks -------------------------------------------------------------------------------
    def _store_claim(self, keys: list[str]) -> list[ClaimState]:
        raise NotImplementedError

    def _store_mark_done(self, keys: list[str]) -> None:
        raise NotImplementedError

    def _store_release(self, keys: list[str]) -> None:
        raise NotImplementedError

    def _store_commit(self, leftover: list[str]) -> None:
        raise NotImplementedError

    def _store_rollback(self, claimed: list[str]) -> None:
        raise NotImplementedError

    # -- LedgerSession ---------------------------------------------------------------------------
    @property
    def transaction(self) -> Any | None:
        return None

    def savepoint(self) -> AbstractContextManager[None]:
        return nullcontext()

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("this ledger session is already committed or rolled back; "
                               "open a new one with ledger.session()")

    def claim(self, keys: Sequence[str]) -> list[ClaimState]:
        self._check_open()
        claimed, done = self._claimed, self._done
        if not claimed and not done:
            unique = set(keys)
            if len(unique) == len(keys):
                # The hot path (the pipeline's one claim per batch, keys already unique).
                first = self._store_claim(list(keys))
                if first.count(NEW) == len(first):
                    self._claimed = unique
                else:
                    claimed.update([k for k, s in zip(keys, first, strict=True) if s is NEW])
                return first
        fresh: list[str] = []
        seen: set[str] = set()
        for key in keys:
            if key not in seen and key not in claimed and key not in done:
                fresh.append(key)
            seen.add(key)
        states = dict(zip(fresh, self._store_claim(fresh), strict=True)) if fresh else {}
        out: list[ClaimState] = []
        for key in keys:
            state = states.pop(key, None)
            if state is None:        # a repeat: the first occurrence owns the effect
                out.append(DONE)
            else:
                if state == NEW:
                    claimed.add(key)
                out.append(state)
        return out

    def _owned(self, keys: Sequence[str], op: str) -> tuple[list[str], set[str]]:
        """`keys` without repeats, as a list and a set; each must be claimed and not finished."""
        self._check_open()
        unique = set(keys)
        if len(unique) == len(keys) and unique <= self._claimed:
            return list(keys), unique  # the hot path: unique keys, all claimed by this session
        ordered = list(dict.fromkeys(keys))
        stray = [k for k in ordered if k not in self._claimed]
        if stray:
            raise ValueError(f"{op}: {len(stray)} key(s) were not claimed as NEW in this session "
                             f"or are already done/released, e.g. {stray[0]!r}")
        return ordered, unique

    def mark_done(self, keys: Sequence[str]) -> None:
        ordered, unique = self._owned(keys, "mark_done")
        if ordered:
            self._store_mark_done(ordered)
            self._claimed -= unique
            if self._done:
                self._done |= unique
            else:
                self._done = unique

    def release(self, keys: Sequence[str]) -> None:
        ordered, unique = self._owned(keys, "release")
        if ordered:
            self._store_release(ordered)
            self._claimed -= unique

    def commit(self) -> None:
        self._check_open()
        self._store_commit(list(self._claimed))
        self._finished = True

    def rollback(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._store_rollback(list(self._claimed))


class LazySavepoints:
    """Mixed into a SQL ledger's connection class: per-processor savepoints made lazily.

    `SAVEPOINT` is sent just before the first statement a processor runs, and a successful
    processor's `RELEASE` goes with the next `SAVEPOINT` (or is left to COMMIT). A processor that
    does not touch the database costs nothing; one that does costs one extra statement instead
    of two (on PostgreSQL each is a network round trip, ~0.15 ms here). The connection's
    statement methods call `_aw_flush()` first; the ledger's own statements do not.
    """

    _aw_pending: str | None = None   # savepoint to create before the next statement
    _aw_created: str | None = None   # the running processor's savepoint, once created
    _aw_release: str | None = None   # a finished processor's savepoint, not yet released
    _aw_in_batch: bool = False       # refuse commit()/rollback() from processors

    def _aw_exec(self, statements: list[str]) -> None:
        raise NotImplementedError

    def _aw_flush(self) -> None:
        if self._aw_pending is None:
            return
        statements = []
        if self._aw_release is not None:
            statements.append(f"RELEASE SAVEPOINT {self._aw_release}")
            self._aw_release = None
        statements.append(f"SAVEPOINT {self._aw_pending}")
        self._aw_created, self._aw_pending = self._aw_pending, None
        self._aw_exec(statements)

    def _aw_reset(self) -> None:
        self._aw_pending = self._aw_created = self._aw_release = None

    def _aw_refuse(self, what: str) -> None:
        if self._aw_in_batch:
            raise RuntimeError(f"a processor must not {what} the ledger's transaction: the "
                               "ledger commits the batch, effects and done marks together")

    # (the mixin comes first in the connection class's bases, so these wrap the driver's)
    def commit(self) -> None:
        self._aw_refuse("commit")
        super().commit()  # type: ignore[misc]

    def rollback(self) -> None:
        self._aw_refuse("roll back")
        super().rollback()  # type: ignore[misc]


class LazySavepoint:
    """`LedgerSession.savepoint()` for SQL ledgers (see LazySavepoints): one reusable context
    manager per session. The pipeline enters a savepoint around every processor call; a
    generator-based context manager made per call cost ~1.7 µs, this ~0.3 µs. Savepoints never
    nest, so one name serves them all: a finished processor's deferred `RELEASE aw_sp` goes with
    the next `SAVEPOINT aw_sp`. `broken()` tells a failure of the connection itself (then the
    processor's exception becomes LedgerUnavailable: not the event's fault)."""

    __slots__ = ("_broken", "_conn", "_unavailable")

    def __init__(self, conn: LazySavepoints,
                 unavailable: Callable[[BaseException, str], LedgerUnavailable],
                 broken: Callable[[], bool]) -> None:
        self._conn = conn
        self._unavailable = unavailable
        self._broken = broken

    def __enter__(self) -> None:
        conn = self._conn
        if conn._aw_pending is not None or conn._aw_created is not None:
            raise RuntimeError("ledger savepoints do not nest")
        conn._aw_pending = "aw_sp"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        conn = self._conn
        created, conn._aw_pending, conn._aw_created = conn._aw_created, None, None
        if exc is not None and self._broken():
            raise self._unavailable(exc, "running a processor") from exc
        if created is None:
            return
        if exc_type is None:
            conn._aw_release = created
            return
        try:
            conn._aw_exec([f"ROLLBACK TO SAVEPOINT {created}", f"RELEASE SAVEPOINT {created}"])
        except Exception as exc2:
            raise self._unavailable(exc2, "rolling back a processor's writes") from exc2
