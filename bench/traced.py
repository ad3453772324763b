"""The traced modes of bench/bench_engine.py: `pipeline-traced-P` is the `pipeline` mode with
tracing on at P% parent-based sampling (P: 1, 100, ...), each call span, batch span and ledger
span made as in the worker and encoded to OTLP protobuf as the worker's OTLP exporter would send
it (worker.tracing.encoding; in the worker that runs in the batch span processor's thread), but
not sent (no collector in the count). The events carry no `traceparent`: each call is a root,
sampled at the ratio."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

PREFIX = "pipeline-traced-"


def ratio(mode: str) -> float | None:
    """The sampling ratio of a traced mode; None for any other mode."""
    return float(mode[len(PREFIX):]) / 100 if mode.startswith(PREFIX) else None


def configure(share: float) -> None:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from worker import tracing
    from worker.tracing.encoding import encode

    class Encoding(SpanExporter):
        """Encodes each batch of spans as the worker's OTLP exporter does, and drops it."""

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            encode(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    # A queue that holds every span of the run, exported at the end: none dropped, each one
    # encoded and counted, and no export stalls a batch in between (under valgrind a batch
    # that takes longer than the engine's pause_after would count its serving loop too).
    for name, value in (("OTEL_BSP_MAX_QUEUE_SIZE", "2000000"),
                        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2000000"),
                        ("OTEL_BSP_SCHEDULE_DELAY", "3600000")):
        os.environ.setdefault(name, value)
    random.seed(share)  # the same calls sampled run after run
    os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
    os.environ["OTEL_TRACES_SAMPLER_ARG"] = str(share)
    assert tracing.configure("bench", exporter=Encoding())


def flush() -> None:
    """Encode every span still queued (blocking; the SDK's shutdown would give up after its
    export timeout, which a run under valgrind exceeds), then stop tracing."""
    from opentelemetry import trace

    from worker import tracing

    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    tracing.shutdown()
