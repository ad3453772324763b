"""Async processors in the pipeline, without Kafka: key-ordered concurrency (one key's effects in
offset order, one at a time; different keys at once), the bounds, retries that hold up only
their own key, dead letters, cancellation and redelivery (the real-broker side is in
tests/integration/test_key_ordered_concurrency.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from worker.errors import FatalProcessingError, NonRetriableError
from worker.events import Event
from worker.ledger import open_ledger
from worker.ledger.base import Ledger
from worker.processing.pipeline import Pipeline
from worker.processors.api import Context, Processor, RetryPolicy
from worker.types import LocalMessage


def event(n: int, customer: str) -> bytes:
    return json.dumps({
        "id": f"evcus_{n:018d}", "type": "customer.order.paid", "group_id": f"v-{n:018d}",
        "created_at": "2024-03-11T12:06:34.423Z", "data": {"customer": {"id": customer}},
    }).encode()


def batch(n: int, keys: int, start: int = 0, partition: int = 0) -> list[LocalMessage]:
    """`n` events keyed by `keys` customers, in shuffled key order."""
    rng = random.Random(n * 31 + keys)
    out = []
    for i in range(n):
        k = f"cust_{rng.randrange(keys)}"
        out.append(LocalMessage(event(start + i, k), "t", partition, start + i, k.encode()))
    return out


class Calls:
    """Every call an async processor got: (key, offset, start, end), and the most at once."""

    def __init__(self, delay: Callable[[], float] = lambda: 0.0) -> None:
        self.lock = threading.Lock()
        self.delay = delay
        self.calls: list[tuple[str, int, float, float]] = []
        self.now = 0
        self.most = 0

    async def __call__(self, event: Event, ctx: Context) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        t0 = time.perf_counter()
        try:
            assert ctx.transaction is None
            await asyncio.sleep(self.delay())
        finally:
            self.now -= 1
        self.calls.append((event.data.customer.id, ctx.offset, t0,  # type: ignore[union-attr]
                           time.perf_counter()))

    def per_key(self) -> dict[str, list[tuple[int, float, float]]]:
        out: dict[str, list[tuple[int, float, float]]] = {}
        for key, offset, t0, t1 in self.calls:
            out.setdefault(key, []).append((offset, t0, t1))
        return out


def proc(name: str, func: Any, **kw: Any) -> Processor:
    kw.setdefault("retry", RetryPolicy(max_attempts=3, initial_backoff=0.0))
    return Processor(name=name, patterns=("customer.**",), func=func, **kw)


def never() -> bool:
    return False


def test_one_keys_effects_run_in_offset_order_one_at_a_time_and_keys_overlap(
        ledger: Ledger) -> None:
    rng = random.Random(7)
    calls = Calls(lambda: rng.uniform(0.0, 0.004))
    pipe = Pipeline([proc("fwd", calls)], ledger, max_in_flight=64)
    result = pipe.handle(batch(400, 40), never)
    assert result.completed and not result.dead_letters
    assert sorted(o for _, o, _, _ in calls.calls) == list(range(400))  # each once
    for key, seen in calls.per_key().items():
        assert [o for o, _, _ in seen] == sorted(o for o, _, _ in seen), key
        for (_, _, end), (_, start, _) in itertools.pairwise(seen):
            assert start >= end, f"{key}: two effects at once"
    assert calls.most > 8  # different keys ran at once
    assert result.stats.outcomes == {("fwd", "ok"): 400}


def test_max_in_flight_and_a_processors_own_limit_bound_the_calls(ledger: Ledger) -> None:
    a, b = Calls(lambda: 0.002), Calls(lambda: 0.002)
    pipe = Pipeline([proc("a", a), proc("b", b, max_concurrency=2)], ledger, max_in_flight=5)
    assert pipe.handle(batch(100, 50), never).completed
    assert len(a.calls) == len(b.calls) == 100
    assert a.most + b.most <= 5 + 2 and b.most <= 2 and a.most <= 5
    assert a.most >= 3


def test_a_retrying_key_does_not_hold_up_the_others(ledger: Ledger) -> None:
    failures = {"cust_0": 2}
    finished: dict[str, float] = {}

    async def flaky(event: Event, ctx: Context) -> None:
        key = event.data.customer.id  # type: ignore[union-attr]
        if failures.get(key):
            failures[key] -= 1
            raise RuntimeError("endpoint down (test)")
        finished[key] = time.perf_counter()

    pipe = Pipeline([proc("p", flaky, retry=RetryPolicy(max_attempts=3, initial_backoff=0.2))],
                    ledger)
    msgs = [LocalMessage(event(i, f"cust_{i}"), "t", 0, i, f"cust_{i}".encode())
            for i in range(10)]
    t0 = time.perf_counter()
    result = pipe.handle(msgs, never)
    assert result.completed and set(finished) == {f"cust_{i}" for i in range(10)}
    assert finished["cust_0"] - t0 >= 0.6  # 0.2 + 0.4 s of backoff
    assert max(t for k, t in finished.items() if k != "cust_0") - t0 < 0.2
    assert result.stats.outcomes == {("p", "ok"): 10, ("p", "retried"): 2}


def test_failures_are_dead_lettered_per_event_and_the_key_goes_on(ledger: Ledger) -> None:
    seen: list[int] = []

    async def picky(event: Event, ctx: Context) -> None:
        if ctx.offset == 1:
            raise NonRetriableError("schema of the endpoint (test)")
        if ctx.offset == 2:
            raise RuntimeError("always (test)")
        seen.append(ctx.offset)

    pipe = Pipeline([proc("p", picky)], ledger)
    msgs = [LocalMessage(event(i, "cust_a"), "t", 0, i, b"cust_a") for i in range(4)]
    result = pipe.handle(msgs, never)
    assert result.completed and seen == [0, 3]
    letters = sorted(result.dead_letters, key=lambda d: d.source.offset() or 0)
    assert [(d.source.offset(), d.attempts) for d in letters] == [(1, 1), (2, 3)]
    # the failed keys are released, not marked done: a redelivery tries them again
    seen.clear()
    again = pipe.handle(msgs, never)
    assert seen == [] and {d.source.offset() for d in again.dead_letters} == {1, 2}


def test_on_failure_stop_stops_the_batch(ledger: Ledger) -> None:
    async def broken(event: Event, ctx: Context) -> None:
        raise RuntimeError("nope (test)")

    pipe = Pipeline([proc("p", broken, on_failure="stop")], ledger)
    with pytest.raises(FatalProcessingError, match="on_failure='stop'"):
        pipe.handle(batch(5, 5), never)


def test_order_by_chooses_the_ordering_key(ledger: Ledger) -> None:
    """All events carry one Kafka key, but the processor orders by customer: they overlap."""
    calls = Calls(lambda: 0.01)
    pipe = Pipeline([proc("p", calls, order_by=lambda e: e.data.customer.id)], ledger)
    msgs = [LocalMessage(event(i, f"cust_{i % 10}"), "t", 0, i, b"one-key") for i in range(50)]
    assert pipe.handle(msgs, never).completed
    assert calls.most >= 5


def test_events_without_a_key_keep_partition_order(ledger: Ledger) -> None:
    calls = Calls(lambda: 0.001)
    pipe = Pipeline([proc("p", calls)], ledger)
    msgs = [LocalMessage(event(i, f"cust_{i}"), "t", i % 2, i) for i in range(40)]
    assert pipe.handle(msgs, never).completed
    assert calls.most <= 2
    offsets = [o for _, o, _, _ in calls.calls]
    assert [o for o in offsets if o % 2 == 0] == list(range(0, 40, 2))


def test_a_cancelled_batch_keeps_what_finished_and_runs_the_rest_again(ledger: Ledger) -> None:
    started = threading.Event()
    calls = Calls(lambda: 0.05)

    async def slow(event: Event, ctx: Context) -> None:
        started.set()
        await calls(event, ctx)

    pipe = Pipeline([proc("p", slow)], ledger, max_in_flight=4)
    msgs = batch(40, 40)
    result = pipe.handle(msgs, lambda: started.is_set())
    assert not result.completed
    finished = {o for _, o, _, _ in calls.calls}
    assert len(finished) < 40
    calls.calls.clear()
    again = pipe.handle(msgs, never)
    assert again.completed
    # what had finished is done (not run again); everything else runs now, once
    assert {o for _, o, _, _ in calls.calls} == set(range(40)) - finished
    calls.calls.clear()
    pipe.handle(msgs, never)
    assert calls.calls == []  # now every key is done: duplicates


def test_sync_and_async_processors_share_a_batch(ledger: Ledger) -> None:
    calls = Calls()
    transactions: list[Any] = []
    sync = Processor(name="sync", patterns=("customer.**",),
                     func=lambda e, ctx: transactions.append(ctx.transaction))
    pipe = Pipeline([sync, proc("async", calls)], ledger)
    result = pipe.handle(batch(20, 5), never)
    assert result.completed and len(calls.calls) == 20 and len(transactions) == 20
    assert result.stats.outcomes == {("sync", "ok"): 20, ("async", "ok"): 20}


def test_an_async_processor_cannot_require_the_transaction() -> None:
    from worker.processors.api import processor

    async def needs_tx(event: Event, ctx: Context) -> None: ...

    with pytest.raises(ValueError, match="async"):
        processor("customer.**", requires_transaction=True)(needs_tx)


def test_batches_in_flight_together_keep_each_keys_order() -> None:
    """All processors async on a ledger with concurrent sessions: several batches overlap
    (the pipeline's window submits them), and a key's effects still run in offset order
    across them."""
    rng = random.Random(3)
    calls = Calls(lambda: rng.uniform(0.0, 0.003))
    ledger = open_ledger("memory://")
    pipe = Pipeline([proc("fwd", calls)], ledger, max_in_flight=32)
    window = pipe.window
    assert window is not None
    msgs = batch(600, 30)
    futures = [window.submit(msgs[i:i + 100], never) for i in range(0, 600, 100)]
    results = [f.result(timeout=30) for f in futures]
    assert all(r.completed for r in results)
    assert sorted(o for _, o, _, _ in calls.calls) == list(range(600))
    for key, seen in calls.per_key().items():
        seen.sort(key=lambda c: c[1])
        assert [o for o, _, _ in seen] == sorted(o for o, _, _ in seen), key
    pipe.close()


def test_sync_processors_or_a_sql_ledger_keep_one_batch_at_a_time(tmp_path: Path) -> None:
    sync = Processor(name="sync", patterns=("customer.**",), func=lambda e, c: None)
    assert not Pipeline([sync, proc("a", Calls())], open_ledger("memory://")).overlaps
    sqlite = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    assert not Pipeline([proc("a", Calls())], sqlite).overlaps
    sqlite.close()


def test_an_async_call_that_never_returns_is_cancelled_at_its_timeout(ledger: Ledger) -> None:
    """A timeout says the destination is unavailable: the key waits on the circuit (no retry
    attempts spent) and, past --max-outage, its events become `destination_unavailable`."""
    calls = Calls()
    hung = [0]

    async def hangs(event: Event, ctx: Context) -> None:
        if event.data.customer.id == "cust_0":  # type: ignore[union-attr]
            hung[0] += 1
            await asyncio.sleep(3600)
        await calls(event, ctx)

    pipe = Pipeline([proc("p", hangs, timeout=0.2)], ledger, max_outage=0.5)
    msgs = [LocalMessage(event(i, f"cust_{i % 4}"), "t", 0, i, f"cust_{i % 4}".encode())
            for i in range(8)]
    t0 = time.monotonic()
    result = pipe.handle(msgs, never)
    assert result.completed and time.monotonic() - t0 < 5
    assert sorted(d.source.offset() for d in result.dead_letters) == [0, 4]
    assert {d.error_class for d in result.dead_letters} == {"destination_unavailable"}
    first = next(d for d in result.dead_letters if d.source.offset() == 0)
    assert "did not return within 0.2 s" in first.reason
    # 5 timeouts in a row opened the circuit (a retry policy of 3 attempts did not end it);
    # offset 4 waited behind offset 0 in its key's chain and was never called
    assert hung[0] == 5
    assert len(calls.calls) == 6  # the other keys were not held up


def test_what_holds_effects_back_is_shown_by_reason() -> None:
    """3 keys x 3 events, 2 slots, calls held open: 2 in flight, the third key's first effect
    waiting for a slot, 6 behind an earlier effect of their key; then, released, nothing."""
    from worker.vocabulary import EffectWait

    release = threading.Event()

    async def held(event: Event, ctx: Context) -> None:
        while not release.is_set():
            await asyncio.sleep(0.005)

    pipeline = Pipeline([proc("held", held)], open_ledger("memory://"), max_in_flight=2)
    effects = pipeline.effects
    assert effects is not None
    msgs = [LocalMessage(event(i, f"c{i % 3}"), "t", 0, i, f"c{i % 3}".encode())
            for i in range(9)]
    done = threading.Thread(target=pipeline.handle, args=(msgs, never))
    done.start()
    try:
        deadline = time.monotonic() + 10
        while effects.in_flight() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert effects.waiting_by_reason() == {EffectWait.KEY_ORDER: 6, EffectWait.SLOT: 1,
                                               EffectWait.DESTINATION: 0}
        assert effects.keys_active() == 3 and effects.free_slots() == 0
    finally:
        release.set()
        done.join(10)
    assert effects.waiting_by_reason() == {EffectWait.KEY_ORDER: 0, EffectWait.SLOT: 0,
                                           EffectWait.DESTINATION: 0}
    assert effects.keys_active() == 0 and effects.free_slots() == 2
    pipeline.close()
