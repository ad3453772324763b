"""What the ingress reads from a signed delivery before storing it: whether the worker can
decode it at all (the same decoder as `run`; what it refuses goes to the dead-letter topic with
its error class), the Kafka key, and the headers.

The key decides per-customer order in the worker (the partition, and the ordering key of async
effects), so it is the customer: `data.customer.id`; else `data.data.customer.id` (the spec's
wrapped shape); else `event.entity_id` when it names a customer (`cust_…`); else no key (the
producer spreads such records over the partitions). The body is stored unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from worker.errors import EventDecodeError
from worker.events.envelope import decode_event


class _Id(msgspec.Struct):
    id: str | None = None


class _Holder(msgspec.Struct):
    customer: _Id | None = None


class _Data(msgspec.Struct):
    customer: _Id | None = None
    data: _Holder | None = None


class _Event(msgspec.Struct):
    entity_id: str | None = None


class _Keys(msgspec.Struct):
    data: _Data | None = None
    event: _Event | None = None


_keys = msgspec.json.Decoder(_Keys)


class Header:
    """Headers the ingress puts on each stored record."""

    WEBHOOK_ID = "voucherify.webhook_id"
    EVENT_TYPE = "voucherify.event_type"
    RECEIVED_AT = "ingress.received_at"   # ISO 8601, UTC, milliseconds
    SIGNED = "ingress.signed"             # raw, compact (how the signature matched), unsigned


@dataclass(frozen=True, slots=True)
class Reading:
    """A delivery as the ingress stores it: the key and headers; `error` set (class, reason)
    when the worker could not decode it (it then goes to the dead-letter topic)."""

    key: bytes | None
    webhook_id: str | None
    event_type: str | None
    error: tuple[str, str] | None = None


def read(body: bytes) -> Reading:
    try:
        event = decode_event(body)
    except EventDecodeError as exc:
        return Reading(None, None, None, (str(exc.error_class), exc.reason))
    return Reading(customer_key(body), event.webhook_id, event.type)


def customer_key(body: bytes) -> bytes | None:
    try:
        doc = _keys.decode(body)
    except msgspec.DecodeError:
        return None
    data = doc.data
    if data is not None:
        if data.customer is not None and data.customer.id:
            return data.customer.id.encode()
        inner = data.data
        if inner is not None and inner.customer is not None and inner.customer.id:
            return inner.customer.id.encode()
    entity = doc.event.entity_id if doc.event is not None else None
    if entity and entity.startswith("cust_"):
        return entity.encode()
    return None
