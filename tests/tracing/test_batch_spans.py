"""Batch and circuit spans, in process (an in-memory exporter, the real pipeline and memory
ledger): a batch's `consume` span and its ledger calls link to the events' contexts (at most
128 links), a circuit's changes are spans. Against a real Jaeger: test_trace_links.py."""

from __future__ import annotations

from tests.processing.test_pipeline import event, never, proc
from tests.tracing.test_sampling import Spans, finished, traced, traced_pipeline, traceparent
from worker import tracing
from worker.events import Event
from worker.processing.circuit import Circuits
from worker.processing.pipeline import Pipeline
from worker.processors.api import Context
from worker.types import LocalMessage, TopicPartition
from worker.vocabulary import CircuitState

__all__ = ["traced"]  # (the fixture)


def _pipeline() -> Pipeline:
    def ok(e: Event, ctx: Context) -> None:
        pass

    pipe, _ = traced_pipeline([proc("p", "customer.**", ok)])
    return pipe


def test_a_batch_and_its_ledger_calls_link_to_their_events(traced: Spans) -> None:
    exporter = traced(1.0)
    contexts = [traceparent(sampled=True) for _ in range(3)]
    msgs = [LocalMessage(event(n), "t", 0, n, None, headers)
            for n, (_, _, headers) in enumerate(contexts)]
    msgs.append(LocalMessage(event(9), "t", 0, 9))  # no trace context: no link
    pipe = _pipeline()
    assert pipe.handle(msgs, never).completed
    spans = {s.name: s for s in finished(exporter)}
    assert {"consume t", "ledger claim", "ledger mark_done", "ledger commit"} <= set(spans)
    batch = spans["consume t"]
    assert batch.parent is None and batch.context is not None
    assert dict(batch.attributes or {})["messaging.batch.message_count"] == 4
    wanted = {(int(t, 16), int(s, 16)) for t, s, _ in contexts}
    for name in ("consume t", "ledger claim", "ledger mark_done", "ledger commit"):
        linked = {(link.context.trace_id, link.context.span_id) for link in spans[name].links}
        assert linked == wanted, name
    claim = spans["ledger claim"]
    assert claim.parent is not None and claim.parent.span_id == batch.context.span_id


def test_a_batch_links_at_most_128_events_and_says_how_many_it_left_out(
        traced: Spans) -> None:
    exporter = traced(1.0)
    msgs = [LocalMessage(event(n), "t", 0, n, None, traceparent(sampled=True)[2])
            for n in range(200)]
    pipe = _pipeline()
    assert pipe.handle(msgs, never).completed
    batch = next(s for s in finished(exporter) if s.name == "consume t")
    assert len(batch.links) == 128
    assert dict(batch.attributes or {})["worker.links.dropped"] == 72


def test_at_ratio_zero_a_batch_makes_no_span(traced: Spans) -> None:
    exporter = traced(0.0)
    pipe = _pipeline()
    assert pipe.handle([LocalMessage(event(1), "t", 0, 1)], never).completed
    assert finished(exporter) == []


def test_each_circuit_change_is_a_span_at_any_ratio(traced: Spans) -> None:
    exporter = traced(0.0)
    now = [0.0]
    circuits = Circuits(clock=lambda: now[0], rand=lambda: 0.0)
    circuit = circuits.add("crm")
    tracing.trace_circuits(circuits)
    for _ in range(100):
        if circuit.state is not CircuitState.CLOSED:
            break
        circuit.failure(0.0)
    assert circuit.state is CircuitState.OPEN
    circuit.success()  # it answered: closed again (or half-open first)
    spans = finished(exporter)
    assert spans and all(s.name == "circuit crm" for s in spans)
    states = [(dict(s.attributes or {})["worker.circuit.state.before"],
               dict(s.attributes or {})["worker.circuit.state"]) for s in spans]
    assert states[0] == ("closed", "open")
    assert states[-1][1] == str(circuit.state)
    assert dict(spans[0].attributes or {})["worker.destination"] == "crm"


def test_a_confirmed_commit_links_to_the_sampled_batches_it_covers(traced: Spans) -> None:
    exporter = traced(1.0)
    _, _, headers = traceparent(sampled=True)
    pipe = _pipeline()
    msgs = [LocalMessage(event(n), "t", p, n, None, headers) for n, p in ((1, 0), (2, 1))]
    assert pipe.handle(msgs, never).completed
    commits = pipe.tracer.commits  # type: ignore[union-attr]
    commits.record_commit(TopicPartition("t", 0), 1)  # not past offset 1 yet
    commits.record_commit_advance()
    commits.record_commit(TopicPartition("t", 0), 2)
    commits.record_commit(TopicPartition("t", 1), 3)
    commits.record_commit_advance()
    commits.record_commit_advance()  # nothing new: no span
    spans = {s.name: s for s in finished(exporter)}
    commit, batch = spans["commit t"], spans["consume t"]
    assert [s.name for s in finished(exporter, "commit")] == ["commit t"]
    assert batch.context is not None
    linked = [link.context.span_id for link in commit.links]
    assert linked[0] == batch.context.span_id and len(linked) == 3  # the batch, its 2 events
    assert dict(commit.attributes or {})["worker.batches"] == 1
