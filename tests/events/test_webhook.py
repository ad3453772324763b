"""Webhook deliveries (`{"id": "whs_…", "type", "data", "event": {…}}`) decode to the event
they carry, so a delivery retried for a day dedupes like the plain event."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from devtools.generate import EventGenerator
from tests.events.helpers import load_fixtures
from worker.errors import EventDecodeError
from worker.events import decode_event
from worker.events.models import EventSource
from worker.processors.api import Processor
from worker.testing import Harness

SOURCE = {"channel": "API", "user": {"id": "user_1"}, "api_key": {"name": "k", "app_id": "a1"}}


def _delivery(raw: dict[str, Any], **event_fields: Any) -> dict[str, Any]:
    return {
        "id": "whs_0e2905d4db185a04ad",
        "type": raw["type"],
        "data": raw["data"],
        "event": {"id": raw["id"], "type": raw["type"], "created_at": raw["created_at"],
                  "entity_id": "cust_1", "group_id": raw["group_id"], "event_source": SOURCE,
                  **event_fields},
    }


@pytest.mark.parametrize("raw", load_fixtures(), ids=lambda r: r["type"])
def test_a_delivery_gives_the_event_it_carries(raw: dict[str, Any]) -> None:
    plain = decode_event(msgspec.json.encode(raw))
    hooked = decode_event(msgspec.json.encode(_delivery(raw)))
    assert (hooked.id, hooked.type, hooked.group_id, hooked.created_at) == (
        plain.id, plain.type, plain.group_id, plain.created_at)
    assert hooked.data == plain.data
    assert hooked.webhook_id == "whs_0e2905d4db185a04ad"
    assert hooked.event_source == msgspec.convert(SOURCE, EventSource)
    assert plain.webhook_id is None


def test_a_bad_event_inside_a_delivery_names_its_path() -> None:
    raw = load_fixtures()[0]
    doc = _delivery(raw, created_at="2024-05-13T12: 26: 06.250Z")
    with pytest.raises(EventDecodeError) as info:
        decode_event(msgspec.json.encode(doc))
    assert info.value.error_class == "schema"
    assert info.value.reason == "$.event.created_at: invalid RFC3339 encoded datetime"
    del doc["event"]["created_at"]
    with pytest.raises(EventDecodeError) as info:
        decode_event(msgspec.json.encode(doc))
    assert info.value.reason == "$.event.created_at: missing required field"
    doc["event"]["created_at"] = raw["created_at"]
    del doc["event"]["group_id"]
    hooked = decode_event(msgspec.json.encode(doc))
    assert hooked.group_id is None and hooked.webhook_id == doc["id"]


@pytest.mark.parametrize("event", [None, 5, "x", [1]])
def test_without_an_event_object_the_plain_error_stands(event: Any) -> None:
    doc: dict[str, Any] = {"id": "evcus_1", "type": "customer.created", "data": {}}
    if event is not None:
        doc["event"] = event
    with pytest.raises(EventDecodeError) as info:
        decode_event(msgspec.json.encode(doc))
    assert info.value.reason == "$.created_at: missing required field"


@pytest.mark.parametrize("tail", [b"", b"]", b',"x":', b',"x":"\xff"'])
def test_a_delivery_malformed_further_on_is_invalid_json_not_a_crash(tail: bytes) -> None:
    # The plain envelope fails on `type` first; the webhook try then meets the bad tail.
    value = (b'{"type":5,"event":{"id":"e","type":"t","group_id":"g",'
             b'"created_at":"2024-03-11T12:06:34.423Z"}' + tail)
    with pytest.raises(EventDecodeError) as info:
        decode_event(value)
    assert info.value.error_class == "schema"
    assert info.value.reason == "$.type: expected str, got int"


def test_a_delivery_and_the_plain_event_are_one_effect() -> None:
    seen: list[str] = []
    raw = next(r for r in load_fixtures() if r["type"] == "customer.order.paid")

    def record(event: Any, ctx: Any) -> None:
        seen.append(event.id)

    with Harness([Processor(name="record", patterns=("customer.order.*",), func=record)]) as h:
        h.send(msgspec.json.encode(raw))
        second = h.send(msgspec.json.encode(_delivery(raw)))
    assert seen == [raw["id"]]
    assert second.outcomes == {("record", "duplicate"): 1}


def test_generated_deliveries_decode_and_dedupe_against_plain_copies() -> None:
    gen = EventGenerator(5, duplicate_share=0.2, webhook_share=0.5)
    records = list(gen.records(600))
    hooked = [r for r in records if decode_event(r.value).webhook_id is not None]
    assert gen.counts.webhooks == len(hooked) > 200
    assert all(decode_event(r.value).webhook_id.startswith("whs_")  # type: ignore[union-attr]
               for r in hooked)
    with Harness([Processor(name="count", patterns=("**",), func=lambda e, c: None)]) as h:
        result = h.send(*[r.value for r in records])
    # A redelivery is a duplicate whichever shape either copy came in.
    assert result.outcomes == {("count", "ok"): gen.counts.ok,
                               ("count", "duplicate"): gen.counts.duplicates}


def test_no_webhook_share_leaves_the_generated_stream_unchanged() -> None:
    plain = [r.value for r in EventGenerator(9, duplicate_share=0.1).records(200)]
    again = [r.value for r in EventGenerator(9, duplicate_share=0.1,
                                              webhook_share=0.0).records(200)]
    assert plain == again
