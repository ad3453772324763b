"""OTLP/HTTP export of the worker's spans with a cheaper protobuf encoding than the SDK's.

The OTLP exporter's own encoder (opentelemetry-exporter-otlp-proto-common, `encode_spans`)
builds each attribute, span, scope and resource as a separate protobuf message and passes them
to their parents' constructors, which copy them (upb serialises and parses each copy): a span
is copied about four times, an attribute five, and the span's resource is hashed (a JSON dump)
per span to group them. That is ~370,000 instructions per span of 12 attributes, more than the
SDK spends making the span. `encode` writes the same bytes directly (protobuf's wire format:
each field a tag, a length when it is a message or string, its value; spans grouped by their
resource and scope objects), and keeps the encoded attributes that repeat from span to span
(system, topic, partition, group, processor, event type, attempt): ~86,000 instructions for that
span (building the messages in place with upb instead: ~112,000). A test compares its bytes with
`encode_spans`'s. `OTLPExporter` is the SDK's OTLP/HTTP exporter (endpoint, headers, retries,
compression, all from the standard variables) sending them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode

#: OTLP's span kinds (opentelemetry.proto.trace.v1.Span.SpanKind) by the id of the API's,
#: encoded (by id: an Enum's hash is a Python call).
_KIND = {id(SpanKind.INTERNAL): b"\x30\x01", id(SpanKind.SERVER): b"\x30\x02",
         id(SpanKind.CLIENT): b"\x30\x03", id(SpanKind.PRODUCER): b"\x30\x04",
         id(SpanKind.CONSUMER): b"\x30\x05"}  # (field 6, varint)
#: A Status's code by the id of the API's, encoded (field 3, varint; UNSET: none).
_STATUS_CODE = {id(StatusCode.UNSET): b"", id(StatusCode.OK): b"\x18\x01",
                id(StatusCode.ERROR): b"\x18\x02"}
#: OTLP's SpanFlags: the flags say whether the parent (a link's context) is remote.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_U64 = (1 << 64) - 1
_fixed64, _fixed32, _double = (struct.Struct("<Q").pack, struct.Struct("<I").pack,
                               struct.Struct("<d").pack)
_SMALL = [bytes([n]) for n in range(128)]
#: A Status without a description (field 15), by the id of its code.
_STATUS = {code: b"\x7a" + _SMALL[len(field)] + field for code, field in _STATUS_CODE.items()}
#: Encoded attributes (a KeyValue with its field tag) by (tag, key, type, value): most of a
#: call span's attributes repeat from span to span (the system, topic, partition, group,
#: processor, event type, attempt). Emptied when it reaches `_CACHED` entries.
_cache: dict[tuple[bytes, str, type, Any], bytes] = {}
_CACHED = 4096
#: Encoded span names (field 5), emptied at `_CACHED`.
_names: dict[str, bytes] = {}


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + payload


def _value(value: Any) -> bytes:
    """An AnyValue as the SDK's encoder makes it (None: empty)."""
    if isinstance(value, str):  # (most are)
        return _field(b"\x0a", value.encode())
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:  # (the SDK's encoder drops it, logged: the
            raise ValueError(f"{value} is out of int64's range")  # exporter falls back to it)
        return b"\x18" + _varint(value & _U64)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _field(b"\x32", _attributes(b"\x0a", {str(k): v for k, v in value.items()}))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute a KeyValue in field `tag`."""
    if not attributes:
        return b""
    out = []
    cache = _cache
    for key, value in attributes.items():
        kind = type(value)
        if kind is str or kind is int or kind is bool:  # (hashable, and == means the same)
            cached = (tag, key, kind, value)
            encoded = cache.get(cached)
            if encoded is None:
                encoded = _field(tag, _field(b"\x0a", key.encode()) + _field(b"\x12",
                                                                            _value(value)))
                if len(cache) >= _CACHED:
                    cache.clear()
                cache[cached] = encoded
        else:
            encoded = _field(tag, _field(b"\x0a", key.encode()) + _field(b"\x12",
                                                                        _value(value)))
        out.append(encoded)
    return b"".join(out)


def span_attributes(attributes: Mapping[str, Any]) -> bytes:
    """Span attributes as `encode` writes them (each KeyValue kept for the next span: for
    values that repeat)."""
    return _attributes(b"\x4a", attributes)


def attribute_key(key: str) -> bytes:
    """The key of a KeyValue, for `span_attribute`."""
    return _field(b"\x0a", key.encode())


def span_attribute(key: bytes, value: Any) -> bytes:
    """One span attribute (`key` from `attribute_key`) as `encode` writes it, not kept (a
    value that does not repeat: an offset, an event id, a message key). A short string or a
    small non-negative int is written here in one go (each call of `_field` costs ~1,000
    instructions)."""
    kind = type(value)
    if kind is str:
        text = value.encode()
        n = len(text)
        if n < 126:  # (the AnyValue's length, n + 2, and n fit one byte each)
            pair = b"".join((key, b"\x12", _SMALL[n + 2], b"\x0a", _SMALL[n], text))
            if len(pair) < 128:
                return b"\x4a" + _SMALL[len(pair)] + pair
    elif kind is int and 0 <= value < 1 << 14:  # (a varint of one or two bytes)
        number = (b"\x12\x02\x18" + _SMALL[value] if value < 128
                  else b"\x12\x03\x18" + bytes(((value & 127) | 128, value >> 7)))
        pair = key + number
        if len(pair) < 128:
            return b"\x4a" + _SMALL[len(pair)] + pair
    return _field(b"\x4a", key + _field(b"\x12", _value(value)))


class EncodedSpan(ReadableSpan):
    """A finished span whose attributes the worker encoded as it made them
    (worker.tracing.call_attributes): `encoded_attributes`, the bytes `encode` would write for
    `attributes`, in their order."""

    encoded_attributes = b""


def _scope(scope: InstrumentationScope | None) -> bytes:
    """A ScopeSpans' scope field (the spans and the schema URL follow)."""
    if scope is None:
        return b"\x0a\x00"
    body = _field(b"\x0a", scope.name.encode()) if scope.name else b""
    if scope.version:
        body += _field(b"\x12", scope.version.encode())
    return _field(b"\x0a", body + _attributes(b"\x1a", scope.attributes))


def _span(span: ReadableSpan) -> bytes:
    """A Span, in field 2 of its ScopeSpans. Read from the span's own fields (the locked SDK's
    ReadableSpan, which its Span extends), not its properties: each of those is a Python call,
    and `attributes`, `events` and `links` make a copy."""
    context = span._context
    assert context is not None
    # (a SpanContext is a tuple: trace id, span id, is remote, flags, trace state, is valid)
    out = [b"\x0a\x10", context[0].to_bytes(16, "big"), b"\x12\x08", context[1].to_bytes(8, "big")]
    trace_state = context[4]
    if trace_state:
        out.append(_field(b"\x1a", ",".join(
            [f"{k}={v}" for k, v in trace_state.items()]).encode()))
    parent, flags = span._parent, _HAS_IS_REMOTE
    if parent:
        out += (b"\x22\x08", parent[1].to_bytes(8, "big"))
        if parent[2]:
            flags |= _IS_REMOTE
    name = span._name
    if name:
        encoded = _names.get(name)
        if encoded is None:
            encoded = _field(b"\x2a", name.encode())
            if len(_names) >= _CACHED:
                _names.clear()
            _names[name] = encoded
        out.append(encoded)
    out.append(_KIND[id(span._kind)])
    if span._start_time:
        out += (b"\x39", _fixed64(span._start_time))
    if span._end_time:
        out += (b"\x41", _fixed64(span._end_time))
    attributes = span._attributes
    if type(span) is EncodedSpan:
        out.append(span.encoded_attributes)
    elif attributes:
        out.append(_attributes(b"\x4a", attributes))
    if isinstance(attributes, BoundedAttributes) and attributes.dropped:
        out += (b"\x50", _varint(attributes.dropped))
    events = span._events
    for event in events:
        body = b"\x09" + _fixed64(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _field(b"\x12", event.name.encode())
        body += _attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            body += b"\x20" + _varint(event.dropped_attributes)
        out.append(_field(b"\x5a", body))
    if isinstance(events, BoundedList) and events.dropped:
        out += (b"\x60", _varint(events.dropped))
    links = span._links
    for link in links:
        linked = link.context
        body = (b"\x0a\x10" + linked.trace_id.to_bytes(16, "big") + b"\x12\x08"
                + linked.span_id.to_bytes(8, "big") + _attributes(b"\x22", link.attributes))
        if link.dropped_attributes:
            body += b"\x28" + _varint(link.dropped_attributes)
        link_flags = _HAS_IS_REMOTE | (_IS_REMOTE if linked.is_remote else 0)
        out.append(_field(b"\x6a", body + b"\x35" + _fixed32(link_flags)))
    if isinstance(links, BoundedList) and links.dropped:
        out += (b"\x70", _varint(links.dropped))
    status = span._status
    if status is not None:
        description = status._description
        if description:
            out.append(_field(b"\x7a", _field(b"\x12", description.encode())
                              + _STATUS_CODE[id(status._status_code)]))
        else:
            out.append(_STATUS[id(status._status_code)])
    out += (b"\x85\x01", _fixed32(flags))  # (field 16, fixed32)
    return _field(b"\x12", b"".join(out))


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised OTLP request of `spans`: the bytes of the SDK's
    `encode_spans(spans).SerializeToString()` (spans grouped by their resource and scope
    objects, in the order they come)."""
    resources: dict[int, tuple[Resource, dict[int, tuple[Any, list[bytes]]]]] = {}
    last: tuple[Any, Any, list[bytes]] = (None, None, [])  # (most spans: the last one's)
    for span in spans:
        resource, scope = span._resource, span._instrumentation_scope
        if resource is not last[0] or scope is not last[1]:
            entry = resources.get(id(resource))
            if entry is None:
                entry = resources[id(resource)] = (resource, {})
            group = entry[1].get(id(scope))
            if group is None:
                group = entry[1][id(scope)] = (scope, [])
            last = (resource, scope, group[1])
        last[2].append(_span(span))
    out = []
    for resource, scopes in resources.values():
        body = [_field(b"\x0a", _attributes(b"\x0a", resource.attributes))]
        for scope, encoded in scopes.values():
            scope_spans = _scope(scope) + b"".join(encoded)
            if scope is not None and scope.schema_url:
                scope_spans += _field(b"\x1a", scope.schema_url.encode())
            body.append(_field(b"\x12", scope_spans))
        if resource.schema_url:
            body.append(_field(b"\x1a", resource.schema_url.encode()))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)


class OTLPExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, encoding with `encode`."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return super().export(spans)  # (it logs and fails)
        try:
            data = encode(spans)
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
