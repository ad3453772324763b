"""OpenTelemetry tracing: one trace from a webhook delivery through Kafka to each processor's
effect (docs/observability.md, "Tracing").

Off by default, and then nothing of it runs per event: no processor is wrapped, no header is
read, opentelemetry is not even imported. It is on when the standard environment asks for an
exporter (`OTEL_TRACES_EXPORTER=otlp`, or an `OTEL_EXPORTER_OTLP_ENDPOINT` /
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and `OTEL_SDK_DISABLED` is not true; everything else —
the sampler (`OTEL_TRACES_SAMPLER`, default parent-based always-on), the resource
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), the batch processor (`OTEL_BSP_*`) — is the
SDK's own reading of the standard variables.
"""

from collections.abc import Sequence

from worker.processors.api import Processor
from worker.tracing.batches import BatchTracing
from worker.tracing.circuits import trace_circuits
from worker.tracing.config import active, configure, shutdown
from worker.tracing.dead_letters import dead_letter_spans, replay_span
from worker.tracing.propagation import inject_http, inject_kafka
from worker.tracing.spans import publish_span

__all__ = ["BatchTracing", "active", "batch_tracer", "configure", "dead_letter_spans",
           "inject_http", "inject_kafka", "publish_span", "replay_span", "shutdown",
           "trace_circuits"]


def batch_tracer(group: str, processors: Sequence[Processor]) -> BatchTracing | None:
    """The pipeline's tracer (worker.processing.batch_trace): spans per batch, ledger call and
    processor call of `processors` (the pipeline's, in its order); None when tracing is off
    (then nothing of it runs per event)."""
    return BatchTracing(group, processors) if active() else None
