"""A transactional call that ignores its timeout (librdkafka #5456 and #5511:
send_offsets_to_transaction blocks while the group's coordinator is gone) fails the transaction
within its bound and gets the producer replaced, instead of blocking the worker. Fake producers
here; the real case, a killed broker that coordinates both the transactions and the group, is
tests/cluster/test_exactly_once_broker_kill.py."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.engine.helpers import wait_for
from worker.engine.transactions import TransactionFailed
from worker.kafka import transactions
from worker.kafka.transactions import TransactionalProducer


class FakeProducer:
    def __init__(self, wedge: threading.Event | None) -> None:
        self.wedge = wedge  # send_offsets_to_transaction blocks until it is set
        self.calls: list[str] = []
        self.purged = threading.Event()

    def init_transactions(self, _timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, _tps: Any, _meta: Any, _timeout: float) -> None:
        self.calls.append("send_offsets")
        if self.wedge is not None:
            self.wedge.wait()

    def commit_transaction(self, _timeout: float) -> None:
        self.calls.append("commit")

    def abort_transaction(self, _timeout: float) -> None:
        self.calls.append("abort")

    def poll(self, timeout: float) -> int:
        time.sleep(timeout)
        return 0

    def purge(self) -> None:
        self.purged.set()

    def flush(self, _timeout: float) -> int:
        return 0


def test_a_call_blocked_past_its_timeout_fails_the_transaction_and_replaces_the_producer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    made: list[FakeProducer] = []

    def new_producer(_config: Any, _what: str) -> FakeProducer:
        made.append(FakeProducer(release if not made else None))
        return made[-1]

    monkeypatch.setattr(transactions, "new_producer", new_producer)
    monkeypatch.setattr(transactions, "WEDGED_GRACE_S", 0.2)
    producer = TransactionalProducer({}, "g.w1", op_timeout=0.3)
    try:
        producer.begin()
        t0 = time.monotonic()
        with pytest.raises(TransactionFailed, match="blocked past its timeout"):
            producer.commit([(("t", 0), 10)], object())
        assert time.monotonic() - t0 < 2.0  # the call's timeout + the grace, not for ever
        assert not made[0].purged.is_set()  # still in its call: left to its thread

        producer.begin()  # a new producer (init_transactions fences the old one)
        producer.commit([(("t", 0), 10)], object())
        assert len(made) == 2
        assert made[1].calls == ["init", "begin", "send_offsets", "commit"]

        release.set()  # the old call returns at last: its producer is dropped
        wait_for(made[0].purged.is_set, 5, "the abandoned producer to be dropped")
    finally:
        release.set()
        producer.close(1)


def test_calls_that_return_in_time_keep_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeProducer] = []

    def new_producer(_config: Any, _what: str) -> FakeProducer:
        made.append(FakeProducer(None))
        return made[-1]

    monkeypatch.setattr(transactions, "new_producer", new_producer)
    producer = TransactionalProducer({}, "g.w1", op_timeout=0.3)
    try:
        for _ in range(3):
            producer.begin()
            producer.commit([(("t", 0), 10)], object())
        assert len(made) == 1
        assert made[0].calls.count("commit") == 3
        assert not made[0].purged.is_set()
    finally:
        producer.close(1)
