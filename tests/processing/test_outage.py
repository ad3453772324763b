"""An unavailable destination in the pipeline, without Kafka: sync and async processors wait on
their destination's circuit instead of spending retry attempts, keep their keys' order, let
other destinations flow, and only --max-outage turns the waiting events into
`destination_unavailable` dead letters; the DLQ guardrail does not count those (the real-broker
side is tests/integration/test_destination_outage.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from worker.engine.dead_letter_policy import DeadLetterPolicy, Guardrail
from worker.errors import NonRetriableError, RetryLater
from worker.events import Event
from worker.ledger import open_ledger
from worker.processing.circuit import CircuitPolicy, Circuits
from worker.processing.pipeline import Pipeline
from worker.processors.api import Context, Processor, RetryPolicy
from worker.types import DeadLetter, LocalMessage
from worker.vocabulary import CircuitState, ErrorClass

FAST = CircuitPolicy(failures_to_open=3, first_backoff=0.05, max_backoff=0.2)


def event(n: int, customer: str) -> bytes:
    return json.dumps({
        "id": f"evcus_{n:018d}", "type": "customer.order.paid", "group_id": f"v-{n:018d}",
        "created_at": "2024-03-11T12:06:34.423Z", "data": {"customer": {"id": customer}},
    }).encode()


def msgs(n: int, keys: int = 4, start: int = 0) -> list[LocalMessage]:
    return [LocalMessage(event(start + i, f"cust_{i % keys}"), "t", 0, start + i,
                         f"cust_{i % keys}".encode()) for i in range(n)]


class Down:
    """A destination that is down until `up()`: every call before raises `error`."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error or RetryLater("HTTP 503", 0.0)
        self.is_up = False
        self.failed = 0
        self.done: list[tuple[str, int]] = []  # (customer, offset) of successful calls
        self.lock = threading.Lock()

    def up(self) -> None:
        self.is_up = True

    def _call(self, event: Event, ctx: Context) -> None:
        with self.lock:
            if not self.is_up:
                self.failed += 1
                raise self.error
            self.done.append((event.data.customer.id, ctx.offset))  # type: ignore[union-attr]

    def sync(self, event: Event, ctx: Context) -> None:
        self._call(event, ctx)

    async def __call__(self, event: Event, ctx: Context) -> None:
        await asyncio.sleep(0)
        self._call(event, ctx)


def proc(name: str, func: Any, **kw: Any) -> Processor:
    kw.setdefault("retry", RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02))
    return Processor(name=name, patterns=("customer.**",), func=func, **kw)


def up_after(dest: Down, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, dest.up)
    timer.start()
    return timer


def never() -> bool:
    return False


def test_a_sync_processor_raising_retry_later_waits_without_spending_attempts() -> None:
    dest = Down()
    pipe = Pipeline([proc("crm", dest.sync)], open_ledger("memory://"),
                    circuits=Circuits(FAST))
    up_after(dest, 1.0)
    result = pipe.handle(msgs(5), never)
    assert result.completed and not result.dead_letters
    assert [o for _, o in dest.done] == [0, 1, 2, 3, 4]  # in order, each once
    # 2 attempts would have dead-lettered it; the circuit held the calls back instead
    assert 3 <= dest.failed <= 3 + int(1.0 / 0.05) + 2
    assert pipe.circuits["crm"].state is CircuitState.CLOSED


def test_a_connection_error_counts_as_unavailable_too() -> None:
    dest = Down(ConnectionRefusedError("connection refused"))
    pipe = Pipeline([proc("crm", dest.sync)], open_ledger("memory://"),
                    circuits=Circuits(FAST))
    up_after(dest, 0.5)
    result = pipe.handle(msgs(2), never)
    assert result.completed and not result.dead_letters and len(dest.done) == 2


def test_async_effects_wait_in_key_order_and_calls_to_the_down_destination_stay_few() -> None:
    dest = Down()
    pipe = Pipeline([proc("crm", dest)], open_ledger("memory://"), max_in_flight=8,
                    circuits=Circuits(FAST))
    up_after(dest, 1.5)
    result = pipe.handle(msgs(200, keys=10), never)
    pipe.close()
    assert result.completed and not result.dead_letters
    assert sorted(o for _, o in dest.done) == list(range(200))
    per_key: dict[str, list[int]] = {}
    for customer, offset in dest.done:
        per_key.setdefault(customer, []).append(offset)
    assert all(offsets == sorted(offsets) for offsets in per_key.values())
    # the first wave (at most max_in_flight) plus the probes of 1.5 s of backoffs
    assert dest.failed <= 8 + 3 + 1.5 / 0.05


def test_other_destinations_keep_flowing_while_one_is_down() -> None:
    down, healthy = Down(), Down()
    healthy.up()
    pipe = Pipeline([proc("crm", down), proc("mail", healthy)], open_ledger("memory://"),
                    circuits=Circuits(FAST))
    finished = threading.Event()
    box: list[Any] = []

    def run() -> None:
        box.append(pipe.handle(msgs(100, keys=5), never))
        finished.set()

    threading.Thread(target=run, daemon=True).start()
    deadline = time.monotonic() + 10
    while len(healthy.done) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(healthy.done) == 100 and not finished.is_set() and not down.done
    down.up()
    assert finished.wait(10)
    pipe.close()
    assert box[0].completed and not box[0].dead_letters and len(down.done) == 100


def test_effects_waiting_for_a_down_destination_do_not_fill_the_pending_bound() -> None:
    """The engine stops reading once pending() passes 16 x --max-in-flight; the effects parked
    on an open circuit do not count, so the other destinations keep being fed."""
    down, healthy = Down(), Down()
    healthy.up()
    pipe = Pipeline([proc("crm", down), proc("mail", healthy)], open_ledger("memory://"),
                    circuits=Circuits(FAST))
    effects = pipe.effects
    assert effects is not None
    finished = threading.Event()
    threading.Thread(target=lambda: (pipe.handle(msgs(100, keys=5), never), finished.set()),
                     daemon=True).start()
    deadline = time.monotonic() + 10
    while len(healthy.done) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(healthy.done) == 100 and pipe.circuits.not_closed == {"crm"}
    assert effects.pending() == 0  # 100 crm effects unfinished, all parked
    down.up()
    assert finished.wait(10)
    assert effects.pending() == 0
    pipe.close()


def test_a_bad_event_is_dead_lettered_at_once_during_another_destinations_outage() -> None:
    down = Down()

    def refuses(event: Event, ctx: Context) -> None:
        raise NonRetriableError("HTTP 400: unknown customer")

    pipe = Pipeline([proc("crm", down), proc("strict", refuses)], open_ledger("memory://"),
                    circuits=Circuits(FAST))
    up_after(down, 0.5)
    result = pipe.handle(msgs(3), never)
    pipe.close()
    assert {(d.processor, d.error_class) for d in result.dead_letters} == {
        ("strict", ErrorClass.NON_RETRIABLE)}
    assert len(result.dead_letters) == 3 and len(down.done) == 3


def test_past_max_outage_the_waiting_events_become_destination_unavailable() -> None:
    for make in (lambda d: d.sync, lambda d: d):  # sync, then async
        dest = Down()
        pipe = Pipeline([proc("crm", make(dest))], open_ledger("memory://"),
                        circuits=Circuits(FAST, max_outage=0.3))
        t0 = time.monotonic()
        result = pipe.handle(msgs(20), never)
        pipe.close()
        assert result.completed and time.monotonic() - t0 < 5
        assert len(result.dead_letters) == 20 and not dest.done
        assert {d.error_class for d in result.dead_letters} == {"destination_unavailable"}
        assert all("destination 'crm' unavailable" in d.reason for d in result.dead_letters)
        # the circuit held most of them back: they were dead-lettered without a call
        assert dest.failed < 20


def test_the_guardrail_does_not_count_outage_dead_letters() -> None:
    policy = DeadLetterPolicy(None, Guardrail(0.1, 100, 10))
    outage = [DeadLetter(LocalMessage(b"{}", "t", 0, i), ErrorClass.DESTINATION_UNAVAILABLE,
                         "down", "crm") for i in range(50)]
    assert policy.check(50, 0) is None
    settled = policy.settle(50, outage, lambda _delay: False)
    # counted as 0 bad events (it fails only because this policy has no producer to write)
    assert settled.failure is not None and "no DLQ producer" in settled.failure[1]
    assert policy.guardrail.current_share == 0.0
    # the same number of bad events trips it
    bad = [DeadLetter(LocalMessage(b"{}", "t", 0, i), ErrorClass.SCHEMA, "bad")
           for i in range(50)]
    settled = policy.settle(50, bad, lambda _delay: False)
    assert settled.failure is not None and "guardrail tripped" in settled.failure[1]
