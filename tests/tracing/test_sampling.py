"""The sampling rule, in process (an in-memory span exporter, the real pipeline and memory
ledger): parent-based with the standard ratio, failures recorded at any ratio, each call after a
failed one linked to it. The same against a real Jaeger: test_trace_links.py."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.processing.test_pipeline import event, make, never, proc
from worker import tracing
from worker.events import Event
from worker.ledger import open_ledger
from worker.processing.pipeline import Pipeline
from worker.processors.api import Context, Processor
from worker.tracing.sampling import RecordFailures, from_environment, root_ratio
from worker.types import LocalMessage

Spans = Callable[[float], InMemorySpanExporter]


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spans]:
    def configure(ratio: float) -> InMemorySpanExporter:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", str(ratio))
        exporter = InMemorySpanExporter()
        assert tracing.configure("test", {}, exporter=exporter)
        return exporter

    yield configure
    tracing.shutdown()


def finished(exporter: InMemorySpanExporter, prefix: str = "") -> list[ReadableSpan]:
    """The spans exported (whose name starts with `prefix`), in order."""
    tracing.shutdown()  # exports what is buffered
    return sorted((s for s in exporter.get_finished_spans() if s.name.startswith(prefix)),
                  key=lambda s: s.start_time or 0)


def traceparent(sampled: bool) -> tuple[str, str, list[tuple[str, bytes]]]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    value = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    return trace_id, span_id, [("traceparent", value.encode())]


def traced_pipeline(processors: list[Processor]) -> tuple[Pipeline, Any]:
    """The real pipeline (memory ledger) with the worker's tracer."""
    return make(processors, open_ledger("memory://"),
                tracer=tracing.batch_tracer("g", processors))


def run(fails: int, headers: list[tuple[str, bytes]] | None, n: int = 1) -> None:
    """One event through the pipeline whose processor `p` fails `fails` times first."""
    calls: list[int] = []

    def func(e: Event, ctx: Context) -> None:
        calls.append(ctx.attempt)
        if len(calls) <= fails:
            raise RuntimeError(f"failure {len(calls)}")

    p = proc("p", "customer.**", func)
    pipe, _ = traced_pipeline([p])
    result = pipe.handle([LocalMessage(event(n), "t", 0, n, b"k", headers)], never)
    assert result.completed


def test_the_environments_ratio_sampler_is_wrapped_and_known_to_the_fast_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
    sampler = from_environment()
    assert isinstance(sampler, RecordFailures)
    assert root_ratio(sampler) == 0.01
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")  # ignores the parent: no fast path
    assert root_ratio(from_environment()) is None


def test_at_ratio_zero_a_success_is_not_recorded_but_a_failure_is(traced: Spans) -> None:
    exporter = traced(0.0)
    run(fails=0, headers=None, n=1)
    run(fails=1, headers=None, n=2)  # fails once, then succeeds (not recorded)
    spans = finished(exporter)
    assert [s.name for s in spans] == ["process p"]
    assert spans[0].status.status_code is StatusCode.ERROR
    assert spans[0].attributes is not None
    assert spans[0].attributes["worker.event.id"] == f"evcus_{2:018d}"
    assert "worker.record" not in spans[0].attributes  # the marker is not kept


def test_a_failure_in_an_unsampled_trace_is_recorded_in_that_trace(traced: Spans) -> None:
    exporter = traced(1.0)
    trace_id, span_id, headers = traceparent(sampled=False)
    run(fails=0, headers=headers, n=1)  # parent says no: nothing
    run(fails=2, headers=headers, n=2)
    spans = finished(exporter, "process")
    assert [s.name for s in spans] == ["process p", "process p"]
    for s in spans:
        assert s.context is not None and s.parent is not None
        assert f"{s.context.trace_id:032x}" == trace_id and f"{s.parent.span_id:016x}" == span_id
    # the second failure links to the first
    first, second = spans
    assert [link.context.span_id for link in second.links] == [first.context.span_id]


def test_a_sampled_parent_is_followed_at_ratio_zero_and_retries_link_to_the_failed_call(
        traced: Spans) -> None:
    exporter = traced(0.0)
    trace_id, _, headers = traceparent(sampled=True)
    run(fails=2, headers=headers)
    spans = finished(exporter, "process")
    assert [s.name for s in spans] == ["process p"] * 3
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR, StatusCode.ERROR,
                                                     StatusCode.UNSET]
    assert [dict(s.attributes or {}).get("worker.attempt") for s in spans] == [1, 2, 3]
    assert {f"{s.context.trace_id:032x}" for s in spans if s.context} == {trace_id}
    links: list[list[Any]] = [[link.context.span_id for link in s.links] for s in spans]
    ids = [s.context.span_id for s in spans if s.context]
    assert links == [[], [ids[0]], [ids[1]]]


def test_at_a_small_ratio_about_that_share_of_roots_is_recorded(traced: Spans) -> None:
    exporter = traced(0.1)
    calls = 0

    def func(e: Event, ctx: Context) -> None:
        nonlocal calls
        calls += 1

    p = proc("p", "customer.**", func)
    pipe, _ = traced_pipeline([p])
    msgs = [LocalMessage(event(n), "t", 0, n) for n in range(2000)]
    assert pipe.handle(msgs, never).completed
    recorded = len(finished(exporter, "process"))
    assert calls == 2000 and 100 < recorded < 300, recorded


def test_a_sampler_of_its_own_decides_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # not parent-based: no fast path
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", {}, exporter=exporter)
    try:
        _, _, headers = traceparent(sampled=True)
        run(fails=1, headers=headers, n=1)  # the sampler says no, but the failure is recorded
        spans = finished(exporter, "process")
    finally:
        tracing.shutdown()
    assert [(s.name, s.status.status_code) for s in spans] == [("process p", StatusCode.ERROR)]
