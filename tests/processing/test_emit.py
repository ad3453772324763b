"""`ctx.emit` in at-least-once mode, without Kafka (an in-memory sink whose acknowledgements the
test controls): a call's records are produced only if it succeeds, and an emitting effect is
marked done only after every record of its batch was acknowledged. The real-broker test is
tests/integration/test_emit_outputs.py."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import msgspec
import pytest

from tests.processing.test_pipeline import event, make, messages, never, proc
from worker.events import Event, decode_event
from worker.ledger.base import Ledger
from worker.outputs import Deliveries, OutputRecord, OutputUnavailable
from worker.processing.pipeline import Pipeline
from worker.processing.routing import Router
from worker.processors.api import Context, Processor


class Sink:
    """Keeps what was produced; acknowledges at once, or fails, or holds the reports back."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []
        self.fail_next = 0          # the next N produce() calls' records fail
        self.hold = False           # keep the reports until release()
        self._held: list[Deliveries] = []

    def produce(self, records: Sequence[OutputRecord], deliveries: Deliveries) -> None:
        deliveries.expect(len(records))
        self.records.extend(records)
        failing = self.fail_next > 0
        self.fail_next -= failing
        for _ in records:
            if self.hold:
                self._held.append(deliveries)
            else:
                deliveries.report("Local: Message timed out" if failing else None)

    def release(self) -> None:
        for d in self._held:
            d.report(None)
        self._held = []

    def close(self) -> None:
        pass

    def values(self) -> list[bytes]:
        return [r.value for r in self.records]


def emitter(e: Event, ctx: Context) -> None:
    ctx.emit("out", e.id.encode(), key=e.group_id)


def test_records_are_produced_keyed_and_the_effect_is_done_once(ledger: Ledger) -> None:
    sink = Sink()
    pipe, rec = make([proc("p", "**", emitter)], ledger, outputs=sink)
    assert pipe.handle(messages([event(1), event(2), event(1)]), never).completed
    assert pipe.handle(messages([event(2)], start=3), never).completed
    assert sink.values() == [b"evcus_000000000000000001", b"evcus_000000000000000002"]
    assert sink.records[0] == OutputRecord("out", b"evcus_000000000000000001",
                                           b"v-000000000000000001", None)
    assert rec.outcomes == {("p", "ok"): 2, ("p", "duplicate"): 2}


def test_a_failed_attempt_s_records_are_dropped_and_its_retry_emits_afresh(
        ledger: Ledger) -> None:
    sink = Sink()

    def flaky(e: Event, ctx: Context) -> None:
        ctx.emit("out", f"{e.id}/{ctx.attempt}".encode())
        if ctx.attempt < 2:
            raise RuntimeError("downstream timeout")

    pipe, _ = make([proc("p", "**", flaky)], ledger, outputs=sink)
    assert pipe.handle(messages([event(1)]), never).completed
    assert sink.values() == [b"evcus_000000000000000001/2"]


def test_unacknowledged_records_run_the_emitting_effects_again_not_the_others(
        ledger: Ledger) -> None:
    probe = ledger.session()
    outside = probe.transaction is None
    probe.rollback()
    sink = Sink()
    sink.fail_next = 1
    plain: list[str] = []
    pipe, rec = make([proc("p", "**", emitter),
                      proc("plain", "**", lambda e, c: plain.append(e.id))], ledger,
                     outputs=sink)
    assert pipe.handle(messages([event(1)]), never).completed
    # the first attempt's record failed: the batch ran again and emitted again
    assert sink.values() == [b"evcus_000000000000000001"] * 2
    assert len(rec.ledger_up) == 1  # one backoff
    # on SQLite the plain effect's done mark rolled back with the batch (it ran twice, as any
    # effect outside the transaction does after a rollback); on memory it was marked at once
    assert len(plain) == (1 if outside else 2)
    assert pipe.handle(messages([event(1)], start=1), never).completed
    assert len(sink.records) == 2  # done now: a redelivery emits nothing


def test_a_batch_cancelled_before_its_records_were_acknowledged_emits_again(
        ledger: Ledger) -> None:
    """The at-least-once rule: the emitting effect was not marked done, so the redelivered
    event emits again (a crash at the same moment gives the same)."""
    sink = Sink()
    sink.hold = True
    cancel = threading.Event()
    pipe, _ = make([proc("p", "**", emitter)], ledger, outputs=sink)
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    result = pipe.handle(messages([event(1)]), cancel.is_set)
    timer.join()
    assert not result.completed
    sink.hold = False
    sink.release()
    assert pipe.handle(messages([event(1)]), never).completed
    assert sink.values() == [b"evcus_000000000000000001"] * 2
    assert pipe.handle(messages([event(1)]), never).completed
    assert len(sink.records) == 2


def test_async_processors_emit_and_are_marked_after_the_acknowledgement(
        ledger: Ledger) -> None:
    sink = Sink()

    async def aemit(e: Event, ctx: Context) -> None:
        ctx.emit("out", e.id.encode(), key=b"k")

    procs = [Processor(name="a", patterns=("**",), func=aemit)]
    pipe = Pipeline(procs, ledger, router=Router(procs), outputs=sink)
    try:
        sink.fail_next = 1
        assert pipe.handle(messages([event(1), event(2)]), never).completed
        assert pipe.handle(messages([event(1), event(2)], start=2), never).completed
    finally:
        pipe.close()
    # the first effect's record failed: the batch ran its unmarked (held) effects again, both
    # in key order, and the redelivery emitted nothing
    one, two = b"evcus_000000000000000001", b"evcus_000000000000000002"
    assert sink.values() == [one, two, one, two]


def test_emit_struct_and_str_keys() -> None:
    class Tier(msgspec.Struct):
        customer: str
        tier: str

    records: list[OutputRecord] = []

    def p(e: Event, ctx: Context) -> None:
        ctx.emit_struct("tiers", Tier("c1", "gold"), key="c1", headers=[("h", b"v")])
        records.extend(ctx.emitted)

    ctx = Context(proc("p", "**", p), decode_event(event(1)), "t", 0, 0, None)
    p(ctx.event, ctx)
    assert records == [OutputRecord("tiers", b'{"customer":"c1","tier":"gold"}', b"c1",
                                    [("h", b"v")])]
    with pytest.raises(TypeError, match="must be bytes"):
        ctx.emit("t", "text")  # type: ignore[arg-type]


def test_a_pipeline_without_a_sink_stops_on_an_emit(ledger: Ledger) -> None:
    pipe, _ = make([proc("p", "**", emitter)], ledger)
    with pytest.raises(RuntimeError, match="no output sink"):
        pipe.handle(messages([event(1)]), never)


def test_deliveries_raise_on_a_failed_record() -> None:
    d = Deliveries()
    d.expect(2)
    d.report(None)
    assert not d.wait(never, bound=0.01)
    d.report("broker down")
    with pytest.raises(OutputUnavailable, match="broker down"):
        d.wait(never)



class Marks:
    """Emitted marks in memory (worker.outputs.EmittedMarks), committed by the test."""

    def __init__(self) -> None:
        self.committed: set[tuple[tuple[str, int], str]] = set()
        self.pending: list[tuple[tuple[str, int], str]] = []

    def emitted(self, partition: tuple[str, int], key: str) -> bool:
        return (partition, key) in self.committed or (partition, key) in self.pending

    def mark(self, marks: Sequence[tuple[tuple[str, int], str]]) -> None:
        self.pending.extend(marks)

    def commit(self) -> None:
        self.committed.update(self.pending)
        self.pending = []


def test_exactly_once_marks_emitting_effects_in_the_transaction_not_the_ledger(
        ledger: Ledger) -> None:
    sink, marks = Sink(), Marks()
    plain: list[str] = []
    pipe, rec = make([proc("p", "**", emitter),
                      proc("plain", "**", lambda e, c: plain.append(e.id))], ledger,
                     outputs=sink, emitted_marks=marks)
    assert pipe.window is None and pipe.exactly_once
    assert pipe.handle(messages([event(1), event(2)]), never).completed
    assert sorted(k for _, k in marks.pending) == sorted(
        [pipe.processors[0].idempotency_key(decode_event(event(n))) for n in (1, 2)])
    # the transaction aborted: nothing of its marks counts, the event emits again...
    marks.pending = []
    assert pipe.handle(messages([event(1)]), never).completed
    assert sink.values().count(b"evcus_000000000000000001") == 2
    marks.commit()
    # ...and once committed, a redelivery (same event, another offset) emits nothing
    assert pipe.handle(messages([event(1)], start=5), never).completed
    assert sink.values().count(b"evcus_000000000000000001") == 2
    assert plain == ["evcus_000000000000000001", "evcus_000000000000000002"]
    assert rec.outcomes[("p", "duplicate")] == 1


def test_exactly_once_ends_the_batch_when_records_are_not_acknowledged(ledger: Ledger) -> None:
    sink, marks = Sink(), Marks()
    sink.fail_next = 1
    pipe, rec = make([proc("p", "**", emitter)], ledger, outputs=sink, emitted_marks=marks)
    result = pipe.handle(messages([event(1)]), never)
    assert not result.completed  # the engine aborts the transaction and reads it again
    assert marks.pending == [] and rec.ledger_up == []
