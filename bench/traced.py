"""The traced modes of bench/bench_engine.py: `pipeline-traced-P` is the `pipeline` mode with
tracing on at P% parent-based sampling (P: 1, 100, ...), each call span, batch span and ledger
span made as in the worker and encoded to OTLP protobuf as the OTLP exporter would send it, but
not sent (no collector in the count). The events carry no `traceparent`: each call is a root,
sampled at the ratio."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

PREFIX = "pipeline-traced-"


def ratio(mode: str) -> float | None:
    """The sampling ratio of a traced mode; None for any other mode."""
    return float(mode[len(PREFIX):]) / 100 if mode.startswith(PREFIX) else None


def configure(share: float) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from worker import tracing

    class Encoding(SpanExporter):
        """Encodes each batch of spans as the OTLP exporter does, and drops it."""

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    # a queue that holds every span of the run: none dropped, each one encoded and counted
    os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
    os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
    os.environ["OTEL_TRACES_SAMPLER_ARG"] = str(share)
    assert tracing.configure("bench", exporter=Encoding())
