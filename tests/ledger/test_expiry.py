"""Leases, done-mark expiry and the memory ledger's bounds (Redis and memory)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.ledger.conftest import with_option
from worker.ledger import ClaimState, open_ledger
from worker.ledger.memory import MemoryLedger

NEW, DONE, BUSY = ClaimState.NEW, ClaimState.DONE, ClaimState.BUSY
Keys = Callable[[int], list[str]]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_memory_lease_of_a_crashed_worker_expires(keys: Keys) -> None:
    now = [1000.0]
    ledger = open_ledger("memory://", lease_seconds=30, clock=lambda: now[0])
    k = keys(1)
    ledger.session().claim(k)            # a worker that claims and dies
    assert ledger.session().claim(k) == [BUSY]
    now[0] += 31
    assert ledger.session().claim(k) == [NEW]


def test_memory_done_marks_expire_after_retention(keys: Keys) -> None:
    now = [1000.0]
    ledger = open_ledger("memory://", retention_seconds=100, lease_seconds=1,
                         clock=lambda: now[0])
    k = keys(1)
    s = ledger.session()
    s.claim(k)
    s.mark_done(k)
    s.commit()
    now[0] += 99
    assert ledger.session().claim(k) == [DONE]
    now[0] += 2
    assert ledger.session().claim(k) == [NEW]


def test_memory_is_bounded_by_count_lru(keys: Keys) -> None:
    """Two generations: never more than max_keys held, the max_keys / 2 most recently used
    always kept, the least recently used dropped first."""
    ledger = open_ledger("memory://?max_keys=4")
    assert isinstance(ledger, MemoryLedger)
    ks = keys(10)
    for i, k in enumerate(ks):
        s = ledger.session()
        s.claim([k])
        s.mark_done([k])
        s.commit()
        if i >= 1:  # ks[0] is used again all along: it must never be evicted
            assert ledger.session().claim([ks[0]]) == [DONE]
        assert 1 <= len(ledger) <= 4
    assert ledger.session().claim([ks[9]]) == [DONE]   # recent ones stay
    assert ledger.session().claim([ks[1]]) == [NEW]    # the least recently used went


def test_memory_bound_holds_for_a_batch_larger_than_max_keys(keys: Keys) -> None:
    ledger = open_ledger("memory://?max_keys=10")
    ks = keys(25)
    s = ledger.session()
    assert s.claim(ks) == [NEW] * 25
    s.mark_done(ks)
    s.commit()
    assert len(ledger) <= 10
    assert ledger.session().claim(ks[-5:]) == [DONE] * 5  # the newest of the batch stay


@pytest.fixture
def redis_prefixed(redis_url: str, keys: Keys) -> Iterator[tuple[str, str]]:
    prefix = f"test-{keys(1)[0][5:13]}:"
    yield with_option(redis_url, "prefix", prefix), prefix
    client = redis.Redis.from_url(redis_url)
    leftover = list(client.scan_iter(match=f"{prefix}*"))
    if leftover:
        client.delete(*leftover)
    client.close()


@pytest.mark.redis
def test_redis_lease_of_a_crashed_worker_expires(redis_prefixed: tuple[str, str],
                                                 keys: Keys) -> None:
    url, _ = redis_prefixed
    crashed = open_ledger(url, lease_seconds=0.3)
    k = keys(1)
    crashed.session().claim(k)           # never finished
    other = open_ledger(url)
    assert other.session().claim(k) == [BUSY]
    started = time.monotonic()
    results: list[ClaimState] = []

    def claimed() -> bool:
        results[:] = other.session().claim(k)
        return results == [NEW]

    wait_for(claimed, 5, "the lease to expire")
    assert time.monotonic() - started > 0.1


@pytest.mark.redis
def test_redis_release_never_deletes_another_workers_lease(redis_prefixed: tuple[str, str],
                                                          keys: Keys) -> None:
    url, _ = redis_prefixed
    slow = open_ledger(url, lease_seconds=0.2)
    k = keys(1)
    slow_session = slow.session()
    assert slow_session.claim(k) == [NEW]
    fast = open_ledger(url, lease_seconds=60)
    fast_session = fast.session()
    got: list[ClaimState] = []

    def took_over() -> bool:
        got[:] = fast_session.claim(k)
        return got == [NEW]

    wait_for(took_over, 5, "the slow worker's lease to expire")
    slow_session.release(k)              # its lease is gone; the new owner's must stay
    assert open_ledger(url).session().claim(k) == [BUSY]
    fast_session.mark_done(k)
    fast_session.commit()


@pytest.mark.redis
def test_redis_done_marks_expire(redis_prefixed: tuple[str, str], redis_url: str,
                                 keys: Keys) -> None:
    url, prefix = redis_prefixed
    ledger = open_ledger(url, retention_seconds=0.5, lease_seconds=0.1)
    k = keys(1)
    s = ledger.session()
    s.claim(k)
    s.mark_done(k)
    s.commit()
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.pttl(prefix + k[0]) <= 500
    assert ledger.session().claim(k) == [DONE]
    wait_for(lambda: not client.exists(prefix + k[0]), 5, "the done mark to expire")
    assert ledger.session().claim(k) == [NEW]
    client.close()
