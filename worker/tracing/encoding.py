"""OTLP/HTTP export of the worker's spans with a cheaper protobuf encoding than the SDK's.

The OTLP exporter's own encoder (opentelemetry-exporter-otlp-proto-common, `encode_spans`)
builds each attribute, span, scope and resource as a separate protobuf message and passes them
to their parents' constructors, which copy them (upb serialises and parses each copy): a span
is copied about four times, an attribute five, and the span's resource is hashed (a JSON dump)
per span to group them. That is ~370,000 instructions per span of 12 attributes, more than the
SDK spends making the span. `encode` builds the same request in place (each message added to
its parent, nothing copied; spans grouped by their resource and scope objects), ~2.6 times
cheaper; a test compares its bytes with `encode_spans`'s. `OTLPExporter` is the SDK's OTLP/HTTP
exporter (endpoint, headers, retries, compression, all from the standard variables) using it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

#: OTLP's span kinds (opentelemetry.proto.trace.v1.Span.SpanKind) by the API's.
_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4,
         SpanKind.CONSUMER: 5}
#: OTLP's SpanFlags: the flags say whether the parent (a link's context) is remote.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200


def _value(target: Any, value: Any) -> None:
    """Set an AnyValue as the SDK's encoder does (None: left empty)."""
    if isinstance(value, str):  # (most are)
        target.string_value = value
    elif value is None:
        return
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, Sequence):
        values = target.array_value.values
        for item in value:
            _value(values.add(), item)
    elif isinstance(value, Mapping):
        _attributes(target.kvlist_value.values, {str(k): v for k, v in value.items()})
    else:
        raise TypeError(f"Invalid type {type(value)} of value {value}")


def _attributes(repeated: Any, attributes: Mapping[str, Any] | None) -> None:
    if attributes:
        for key, value in attributes.items():
            added = repeated.add()
            added.key = key
            _value(added.value, value)


def _scope_spans(request: Any, span: ReadableSpan, resources: dict[int, Any]) -> Any:
    """A new ScopeSpans for `span`'s scope, under its resource's ResourceSpans."""
    resource, scope = span.resource, span.instrumentation_scope
    resource_spans = resources.get(id(resource))
    if resource_spans is None:
        resource_spans = resources[id(resource)] = request.resource_spans.add()
        resource_spans.resource.SetInParent()
        _attributes(resource_spans.resource.attributes, resource.attributes)
        if resource.schema_url:
            resource_spans.schema_url = resource.schema_url
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.SetInParent()
    if scope is not None:
        scope_spans.scope.name = scope.name
        if scope.version:
            scope_spans.scope.version = scope.version
        _attributes(scope_spans.scope.attributes, scope.attributes)
        if scope.schema_url:
            scope_spans.schema_url = scope.schema_url
    return scope_spans.spans


def _span(target: Any, span: ReadableSpan) -> None:
    context = span.get_span_context()
    assert context is not None
    target.trace_id = context.trace_id.to_bytes(16, "big")
    target.span_id = context.span_id.to_bytes(8, "big")
    if context.trace_state:
        target.trace_state = ",".join([f"{k}={v}" for k, v in context.trace_state.items()])
    parent, flags = span.parent, _HAS_IS_REMOTE
    if parent:
        target.parent_span_id = parent.span_id.to_bytes(8, "big")
        if parent.is_remote:
            flags |= _IS_REMOTE
    target.flags = flags
    target.name = span.name
    target.kind = _KIND[span.kind]
    target.start_time_unix_nano = span.start_time or 0
    target.end_time_unix_nano = span.end_time or 0
    _attributes(target.attributes, span.attributes)
    for event in span.events:
        encoded = target.events.add(name=event.name, time_unix_nano=event.timestamp)
        _attributes(encoded.attributes, event.attributes)
        if event.dropped_attributes:
            encoded.dropped_attributes_count = event.dropped_attributes
    for link in span.links:
        encoded = target.links.add()
        linked = link.context
        encoded.trace_id = linked.trace_id.to_bytes(16, "big")
        encoded.span_id = linked.span_id.to_bytes(8, "big")
        _attributes(encoded.attributes, link.attributes)
        if link.dropped_attributes:
            encoded.dropped_attributes_count = link.dropped_attributes
        encoded.flags = _HAS_IS_REMOTE | (_IS_REMOTE if linked.is_remote else 0)
    status = span.status
    if status is not None:
        target.status.SetInParent()
        target.status.code = status.status_code.value
        if status.description:
            target.status.message = status.description
    if span.dropped_attributes:
        target.dropped_attributes_count = span.dropped_attributes
    if span.dropped_events:
        target.dropped_events_count = span.dropped_events
    if span.dropped_links:
        target.dropped_links_count = span.dropped_links


def encode(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OTLP request of `spans`: the same message as the SDK's `encode_spans`."""
    request = ExportTraceServiceRequest()
    resources: dict[int, Any] = {}  # id(resource) -> its ResourceSpans
    scopes: dict[tuple[int, int], Any] = {}  # (id(resource), id(scope)) -> its spans
    for span in spans:
        key = (id(span.resource), id(span.instrumentation_scope))
        target = scopes.get(key)
        if target is None:
            target = scopes[key] = _scope_spans(request, span, resources)
        _span(target.add(), span)
    return request


class OTLPExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, encoding with `encode`."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return super().export(spans)  # (it logs and fails)
        try:
            data = encode(spans).SerializePartialToString()
        except Exception:
            return super().export(spans)  # (the SDK's encoder says what went wrong)
        if _is_request_too_large(data, self._max_request_size):
            return super().export(spans)  # (it logs and drops the batch)
        with self._metrics.export_operation(len(spans)) as result:
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
