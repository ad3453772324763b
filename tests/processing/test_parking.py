"""Parked effects in the pipeline, without Kafka (worker.processing.parking): in overlapping
batches, an effect whose destination has been down past --park-after stops waiting and its
batch completes, reporting the partition's first parked offset; later events of the partition
park at once for that destination (key order) until the partition is read again from there;
the re-read calls, in key order; --max-outage still dead-letters a parked event read again
past its bound. The engine's side is tests/engine/test_parked_offsets.py; the real broker and
HTTP servers, tests/integration/test_healthy_destination_rate.py."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.processing.test_outage import FAST, Down, msgs, never, proc
from worker.ledger import open_ledger
from worker.processing.circuit import Circuits
from worker.processing.parking import Parking
from worker.processing.pipeline import Pipeline
from worker.types import BatchResult, LocalMessage
from worker.vocabulary import ErrorClass

TP = ("t", 0)
PARK_AFTER = 0.2


def pipeline(down: Down, healthy: Down, **circuits: float) -> Pipeline:
    pipe = Pipeline([proc("crm", down), proc("mail", healthy)], open_ledger("memory://"),
                    circuits=Circuits(FAST, **circuits), park_after=PARK_AFTER)
    assert pipe.window is not None
    return pipe


def run(pipe: Pipeline, batch: list[LocalMessage]) -> BatchResult:
    assert pipe.window is not None
    return pipe.window.submit(batch, never).result(10)


def wait(cond: Callable[[], object], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_effects_park_past_park_after_and_later_events_park_at_once_until_read_again() -> None:
    down, healthy = Down(), Down()
    healthy.up()
    pipe = pipeline(down, healthy)
    circuit = pipe.circuits["crm"]
    try:
        t0 = time.monotonic()
        first = run(pipe, msgs(40, keys=5))
        # it completed: the healthy destination got every event, the down one's effects parked
        assert first.completed and first.parked == {TP: 0} and not first.dead_letters
        assert time.monotonic() - t0 >= PARK_AFTER and len(healthy.done) == 40
        assert circuit.parked == 40 and circuit.held == 1 and not down.done
        calls = down.failed
        # the destination is back, but the partition is not read again yet: its later events
        # park at once, without a call (they must not pass the parked ones)
        down.up()
        circuit.success()
        second = run(pipe, msgs(40, keys=5, start=40))
        assert second.completed and second.parked == {TP: 40}
        assert down.failed == calls and not down.done and len(healthy.done) == 80
        assert pipe.window.rereads() == [TP]
        # read again from the parked event: every effect runs, each key in offset order
        again = run(pipe, msgs(80, keys=5))
        assert again.completed and again.parked is None and not again.dead_letters
        assert sorted(o for _, o in down.done) == list(range(80))
        per_key: dict[str, list[int]] = {}
        for customer, offset in down.done:
            per_key.setdefault(customer, []).append(offset)
        assert all(offsets == sorted(offsets) for offsets in per_key.values())
        assert len(healthy.done) == 80  # (the ledger skipped what was done)
        assert circuit.held == 0 and pipe.window.rereads() == []
    finally:
        pipe.close()


def test_parked_events_read_again_while_it_is_still_down_park_again_after_one_probe() -> None:
    down, healthy = Down(), Down()
    healthy.up()
    pipe = pipeline(down, healthy)
    circuit = pipe.circuits["crm"]
    try:
        assert run(pipe, msgs(20, keys=4)).parked == {TP: 0}
        assert pipe.window.rereads() == []  # open, its backoff not over yet
        wait(lambda: pipe.window.rereads() == [TP], "the backoff to pass")
        calls = down.failed
        again = run(pipe, msgs(20, keys=4))
        assert again.completed and again.parked == {TP: 0}
        assert down.failed - calls <= FAST.probes and circuit.held == 1
    finally:
        pipe.close()


def test_a_parked_event_read_again_past_max_outage_becomes_destination_unavailable() -> None:
    down, healthy = Down(), Down()
    healthy.up()
    pipe = pipeline(down, healthy, max_outage=0.6)
    try:
        assert run(pipe, msgs(10, keys=2)).parked == {TP: 0}
        wait(lambda: pipe.circuits["crm"].down_seconds() > 0.6
             and pipe.window.rereads() == [TP], "past --max-outage")
        again = run(pipe, msgs(10, keys=2))
        assert again.completed and again.parked is None
        assert len(again.dead_letters) == 10
        assert {d.error_class for d in again.dead_letters} == {
            ErrorClass.DESTINATION_UNAVAILABLE}
    finally:
        pipe.close()


def test_a_partition_let_go_forgets_what_was_parked() -> None:
    down, healthy = Down(), Down()
    healthy.up()
    pipe = pipeline(down, healthy)
    try:
        assert run(pipe, msgs(10, keys=2)).parked == {TP: 0}
        pipe.window.let_go([TP])
        assert pipe.circuits["crm"].held == 0 and pipe.effects is not None
        assert not pipe.effects.parking.at
    finally:
        pipe.close()


def test_stale_effects_of_batches_read_before_the_re_read_park() -> None:
    circuits = Circuits(FAST)
    circuits.add("crm")
    parking = Parking(circuits, PARK_AFTER)
    parking.parked(TP, "crm", 10)
    assert parking.must_park(TP, "crm", 12, ticket=3)  # a later event: the order rule
    assert not parking.must_park(TP, "crm", 9, ticket=3)
    assert not parking.must_park(("t", 1), "crm", 12, ticket=3)
    assert not parking.must_park(TP, "mail", 12, ticket=3)
    down = Down()
    re_read = [(m, None, proc("crm", down), "k", 0) for m in msgs(5, start=10)]
    parking.reread_from(re_read, ticket=7)  # type: ignore[arg-type]
    assert not parking.at and circuits["crm"].held == 0
    # an effect of a batch read before the re-read (ticket 5) is stale: it parks; the re-read
    # batch's own effects (ticket 7) and later ones call
    assert parking.must_park(TP, "crm", 12, ticket=5)
    assert not parking.must_park(TP, "crm", 12, ticket=7)
    parking.drop_fences(oldest_running=7)
    assert not parking.active


def test_nothing_parks_without_overlapping_batches() -> None:
    down = Down()
    serial = Pipeline([proc("crm", down.sync)], open_ledger("memory://"),
                      circuits=Circuits(FAST), park_after=PARK_AFTER)
    assert serial.window is None and serial.effects is None
    mixed = Pipeline([proc("crm", down), proc("sync", down.sync)], open_ledger("memory://"),
                     circuits=Circuits(FAST), park_after=PARK_AFTER)
    assert mixed.window is None and mixed.effects is not None
    assert mixed.effects.parking.park_after is None
    mixed.close()
