"""The ledger contract, run against every backend (memory, SQLite, real Redis, real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.ledger.conftest import Store, backends, store_done
from worker.errors import ConfigError
from worker.ledger import ClaimState, open_ledger, redacted_url
from worker.ledger._common import PRUNE_CHUNKS_PER_CALL

NEW, DONE, BUSY = ClaimState.NEW, ClaimState.DONE, ClaimState.BUSY
Keys = Callable[[int], list[str]]


def finish(store: Store, ks: list[str]) -> None:
    """Claim, mark done and commit `ks` in one session."""
    ledger = store.open()
    s = ledger.session()
    assert s.claim(ks) == [NEW] * len(ks)
    s.mark_done(ks)
    s.commit()


def test_first_claim_is_new_and_done_keys_are_duplicates(store: Store, keys: Keys) -> None:
    ks = keys(3)
    finish(store, ks)
    s = store.open().session()
    assert s.claim([*ks, *keys(1)]) == [DONE, DONE, DONE, NEW]
    s.rollback()


def test_a_batch_of_500_claims_in_one_call(store: Store, keys: Keys) -> None:
    ks = keys(1200)  # more than one SQL chunk
    ledger = store.open()
    finish(store, ks[:500])
    s = ledger.session()
    states = s.claim(ks)
    assert states == [DONE] * 500 + [NEW] * 700
    s.mark_done(ks[500:])
    s.commit()
    s = ledger.session()
    assert s.claim(ks) == [DONE] * 1200
    s.commit()


def test_repeat_of_a_key_in_one_session_is_done(store: Store, keys: Keys) -> None:
    a, b = keys(2)
    s = store.open().session()
    assert s.claim([a, b, a]) == [NEW, NEW, DONE]
    assert s.claim([b]) == [DONE]        # already ours in this session
    s.mark_done([a, b])
    s.commit()


def test_released_key_can_be_claimed_again(store: Store, keys: Keys) -> None:
    a, b = keys(2)
    ledger = store.open()
    s = ledger.session()
    assert s.claim([a, b]) == [NEW, NEW]
    s.release([a])                       # the processor failed
    s.mark_done([b])
    s.commit()
    s = ledger.session()
    assert s.claim([a, b]) == [NEW, DONE]
    s.rollback()


def test_commit_releases_keys_neither_done_nor_released(store: Store, keys: Keys) -> None:
    a, b = keys(2)
    ledger = store.open()
    s = ledger.session()
    s.claim([a, b])
    s.mark_done([b])
    s.commit()
    other = store.open().session()
    assert other.claim([a, b]) == [NEW, DONE]
    other.rollback()


def test_rollback(store: Store, keys: Keys) -> None:
    """SQL ledgers drop the done marks with the transaction; Redis and memory keep them (the
    effect already happened outside any transaction) and release the other leases."""
    a, b = keys(2)
    ledger = store.open()
    s = ledger.session()
    s.claim([a, b])
    s.mark_done([a])
    s.rollback()
    s2 = store.open().session()
    assert s2.claim([a, b]) == ([NEW, NEW] if store.transactional else [DONE, NEW])
    s2.rollback()


def test_misuse_is_refused(store: Store, keys: Keys) -> None:
    a, b = keys(2)
    s = store.open().session()
    s.claim([a])
    with pytest.raises(ValueError, match="not claimed"):
        s.mark_done([b])
    s.mark_done([a])
    with pytest.raises(ValueError, match="not claimed"):
        s.release([a])
    s.commit()
    with pytest.raises(RuntimeError, match="already committed"):
        s.claim([b])
    s.rollback()  # harmless after commit


def test_savepoint_scopes_a_failed_call(store: Store, keys: Keys) -> None:
    a, b = keys(2)
    s = store.open().session()
    s.claim([a, b])
    with s.savepoint():
        pass
    with pytest.raises(ZeroDivisionError), s.savepoint():
        raise ZeroDivisionError
    s.mark_done([a])
    s.release([b])
    s.commit()


@pytest.mark.parametrize("store", backends("memory", "redis", "postgres"), indirect=True)
def test_unfinished_claim_of_another_session(store: Store, keys: Keys) -> None:
    """A key claimed by a session that has not finished: BUSY for everyone else. (SQLite has a
    single writer: a second session waits for the write lock instead, see test_sqlite.py.)"""
    a, b = keys(2)
    first = store.open().session()
    assert first.claim([a, b]) == [NEW, NEW]
    other_ledger = store.open()
    second = other_ledger.session()
    assert second.claim([a, b]) == [BUSY, BUSY]
    second.rollback()
    first.mark_done([a])
    first.release([b])
    first.commit()
    third = other_ledger.session()
    assert third.claim([a, b]) == [DONE, NEW]
    third.rollback()


@pytest.mark.parametrize("store", backends("memory", "sqlite", "postgres"), indirect=True)
def test_prune_deletes_only_expired_done_marks(store: Store, keys: Keys) -> None:
    """(Redis expires done marks itself: see test_expiry.test_redis_done_marks_expire.)"""
    now = [1_000_000.0]
    ledger = store.open(retention_seconds=100, lease_seconds=10, prune_interval_seconds=0,
                        clock=lambda: now[0])
    old, young = keys(3), keys(2)
    for batch in (old, young):
        s = ledger.session()
        assert s.claim(batch) == [NEW] * len(batch)
        s.mark_done(batch)
        s.commit()
        now[0] += 60
    now[0] += 1  # old is 121 s old, young 61 s
    assert ledger.prune() == 3
    s = ledger.session()
    assert s.claim(old + young) == [NEW] * 3 + [DONE] * 2
    s.rollback()


@pytest.mark.parametrize("store", backends("memory", "sqlite", "postgres"), indirect=True)
def test_prune_is_rate_limited_and_chunked(store: Store, keys: Keys) -> None:
    now = [1_000_000.0]
    ledger = store.open(retention_seconds=100, lease_seconds=10, prune_interval_seconds=30,
                        clock=lambda: now[0])
    if hasattr(ledger, "prune_chunk"):
        ledger.prune_chunk = 7  # type: ignore[attr-defined]  # several chunks per prune
    first, second = keys(20), keys(2)
    s = ledger.session()
    s.claim(first)
    s.mark_done(first)
    s.commit()
    now[0] += 101
    assert ledger.prune() == 20
    now[0] -= 300                 # done marks written "long ago"
    s = ledger.session()
    s.claim(second)
    s.mark_done(second)
    s.commit()
    now[0] += 300 + 10            # 10 s after the last prune
    assert ledger.prune() == 0    # rate-limited although rows are expired
    now[0] += 21
    assert ledger.prune() == 2


@pytest.mark.parametrize("store", backends("sqlite", "postgres"), indirect=True)
def test_a_prune_stopped_by_its_chunk_cap_goes_on_at_the_next_call(store: Store,
                                                                   keys: Keys) -> None:
    """One call deletes at most PRUNE_CHUNKS_PER_CALL chunks (no long stall); the rest is due
    at once, not a whole prune interval later."""
    now = [1_000_000.0]
    ledger = store.open(retention_seconds=100, lease_seconds=10, prune_interval_seconds=3600,
                        clock=lambda: now[0])
    ledger.prune_chunk = 3  # type: ignore[attr-defined]
    cap = 3 * PRUNE_CHUNKS_PER_CALL
    store_done(ledger, keys(cap * 2 + 5))
    now[0] += 101
    assert ledger.prune() == cap
    assert ledger.prune() == cap   # no interval wait: it stopped at its cap
    assert ledger.prune() == 5     # the rest: now it waits for the interval again
    store_done(ledger, keys(2))
    now[0] += 101
    assert ledger.prune() == 0     # expired, but within the prune interval


@pytest.mark.parametrize("store", backends("sqlite", "postgres"), indirect=True)
def test_prune_skips_while_a_session_is_open(store: Store, keys: Keys) -> None:
    now = [1_000_000.0]
    ledger = store.open(retention_seconds=100, lease_seconds=10, prune_interval_seconds=0,
                        clock=lambda: now[0])
    store_done(ledger, keys(2))
    now[0] += 200
    s = ledger.session()
    s.claim(keys(1))
    assert ledger.prune() == 0
    s.rollback()
    assert ledger.prune() == 2


def test_ping_and_close(store: Store) -> None:
    ledger = store.open()
    ledger.ping()
    ledger.close()


def test_open_ledger_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="unsupported ledger URL 'mysql://u:\\*\\*\\*@h/db'"):
        open_ledger("mysql://u:secret@h/db")
    with pytest.raises(ConfigError, match="shorter than its retention"):
        open_ledger("memory://", retention_seconds=10, lease_seconds=10)
    with pytest.raises(ConfigError, match="no file path"):
        open_ledger("sqlite://")
    with pytest.raises(ConfigError, match="plain SQL identifier"):
        open_ledger("sqlite:////tmp/x.db?table=a;drop")


def test_redacted_url() -> None:
    assert redacted_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redacted_url("postgresql://u:pw@h:5/db?x=1") == "postgresql://u:***@h:5/db?x=1"
    assert redacted_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_ledger_options_are_split_off_the_url() -> None:
    from worker.ledger._common import split_options

    parts, ours = split_options("postgresql://u@h/db?table=t1&sslmode=require&application_name="
                                "a%20b", ("table",))
    assert ours == {"table": "t1"}
    assert parts.geturl() == "postgresql://u@h/db?sslmode=require&application_name=a%20b"
