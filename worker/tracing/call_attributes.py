"""The attributes of a processor call's span (worker.tracing.calls), after OpenTelemetry's
messaging conventions plus the worker's own, made once as a dict and once as the OTLP bytes the
exporter sends (worker.tracing.encoding.EncodedSpan).

Most of them repeat from call to call — the system, the operation, the group and the processor
(one encoding per processor), the topic and partition, the event type, the attempt — and are
encoded once and kept; only the offset, the event id and the message key are encoded per call.
Encoding them from the dict in the exporter cost ~2,000 instructions per attribute (a Python
loop over the dict and a cache lookup each, ~57,000 a span); here they cost ~16,000 more than
the dict alone (~12,000), and the exporter writes the bytes as they are.
"""

from __future__ import annotations

from typing import Any

from worker.processors.api import Processor
from worker.tracing.encoding import attribute_key, span_attribute, span_attributes
from worker.tracing.names import KAFKA, Attr
from worker.types import Message

#: Kept encodings per kind (topic and partition, event type, attempt) at most: emptied when
#: full (a feed of junk types must not grow them without bound).
KEPT = 1024

_EVENT_TYPE, _ATTEMPT = Attr.EVENT_TYPE.value, Attr.ATTEMPT.value
_EVENT_ID = Attr.EVENT_ID.value
#: (the keys of the attributes encoded per call)
_OFFSET_KEY = attribute_key("messaging.kafka.offset")
_EVENT_ID_KEY = attribute_key(_EVENT_ID)
_KEY_KEY = attribute_key("messaging.kafka.message.key")


class CallAttributes:
    """The call spans' attributes of one processor in one consumer group."""

    def __init__(self, proc: Processor, group: str) -> None:
        self._fixed: dict[str, Any] = {
            "messaging.system": KAFKA,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": group,
            Attr.PROCESSOR: proc.name,
        }
        self._fixed_encoded = span_attributes(self._fixed)
        self._places: dict[tuple[str, str], bytes] = {}
        self._types: dict[str, bytes] = {}
        self._attempts: dict[int, bytes] = {}

    def attributes(self, msg: Message, event: Any, attempt: int) -> dict[str, Any]:
        """The attributes of the call of `attempt` on the event of `msg` (an SDK span's: its
        exporter encodes them)."""
        return self.make(msg, event, attempt)[0]

    def make(self, msg: Message, event: Any, attempt: int) -> tuple[dict[str, Any], bytes]:
        """The attributes of the call of `attempt` on the event of `msg`, and their encoding
        (the same attributes in the same order)."""
        topic, partition = msg.topic() or "", str(msg.partition() or 0)
        offset, etype, eid = msg.offset() or 0, event.type, event.id
        fixed = self._fixed
        attrs: dict[str, Any] = {**fixed, "messaging.destination.name": topic,
                                 "messaging.destination.partition.id": partition,
                                 _EVENT_TYPE: etype, _ATTEMPT: attempt,
                                 "messaging.kafka.offset": offset, _EVENT_ID: eid}
        place = self._places.get((topic, partition))
        if place is None:
            place = _keep(self._places, (topic, partition), span_attributes(
                {"messaging.destination.name": topic,
                 "messaging.destination.partition.id": partition}))
        kind = self._types.get(etype)
        if kind is None:
            kind = _keep(self._types, etype, span_attributes({_EVENT_TYPE: etype}))
        tries = self._attempts.get(attempt)
        if tries is None:
            tries = _keep(self._attempts, attempt, span_attributes({_ATTEMPT: attempt}))
        key = msg.key()
        if key:
            attrs["messaging.kafka.message.key"] = text = key.decode("utf-8", "replace")
            return attrs, b"".join((self._fixed_encoded, place, kind, tries,
                                    span_attribute(_OFFSET_KEY, offset),
                                    span_attribute(_EVENT_ID_KEY, eid),
                                    span_attribute(_KEY_KEY, text)))
        return attrs, b"".join((self._fixed_encoded, place, kind, tries,
                                span_attribute(_OFFSET_KEY, offset),
                                span_attribute(_EVENT_ID_KEY, eid)))


def _keep(kept: dict[Any, bytes], at: Any, encoded: bytes) -> bytes:
    if len(kept) >= KEPT:
        kept.clear()
    kept[at] = encoded
    return encoded
