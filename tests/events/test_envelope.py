"""The envelope: lazy raw `data`, typed data on access, both data shapes, errors with paths."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tests.events.helpers import DATA, load_fixtures
from worker.errors import EventDecodeError
from worker.events import Event, decode_event
from worker.events.models import EventSource, OrderData

PUBLISHED = (DATA / "published_tier_upgraded.json").read_bytes()


def _event(type_: str = "customer.order.paid", data: Any = None, **fields: Any) -> bytes:
    doc = {
        "id": "evcus_0e2905d4db185a04ad",
        "type": type_,
        "created_at": "2024-03-11T12:06:34.423Z",
        "group_id": "v-0e30613ab3ad14a9c1",
        "data": {"order": {"id": "ord_1", "amount": 1200}} if data is None else data,
    }
    doc.update(fields)
    return msgspec.json.encode(doc)


def test_envelope_keeps_data_raw_until_asked() -> None:
    event = decode_event(PUBLISHED)
    assert isinstance(event, Event)
    assert isinstance(event.raw_data, msgspec.Raw)
    assert "data" not in event.__dict__  # not decoded yet
    first = event.data
    assert event.data is first  # decoded once, cached
    assert msgspec.json.decode(event.raw_data)["loyalty_tier_to"]["name"] == "Loyal gold"


def test_bad_data_does_not_fail_the_envelope_only_the_access() -> None:
    bad = _event(data={"order": {"amount": "12.00"}})
    event = decode_event(bad)  # routing still works
    assert event.type == "customer.order.paid"
    with pytest.raises(EventDecodeError) as info:
        _ = event.data
    assert info.value.error_class == "schema"
    assert info.value.reason == "$.data.order.amount: expected int, got str"


def test_issue_example_error_message() -> None:
    doc = msgspec.json.decode(PUBLISHED)
    doc["data"]["loyalty_tier_to"]["points"]["from"] = "251"
    event = decode_event(msgspec.json.encode(doc))
    with pytest.raises(EventDecodeError) as info:
        _ = event.data
    assert info.value.reason == "$.data.loyalty_tier_to.points.from: expected int, got str"
    assert str(info.value) == info.value.reason


@pytest.mark.parametrize("raw", load_fixtures(), ids=lambda r: r["type"])
def test_wrapped_shape_gives_the_same_typed_value(raw: dict[str, Any]) -> None:
    flat = decode_event(msgspec.json.encode(raw)).data
    source = {"channel": "API", "user": {"id": "user_1"}, "api_key": {"name": "k", "app_id": "a1"}}
    wrapped_doc = {**raw, "data": {"data": raw["data"], "event_source": source}}
    event = decode_event(msgspec.json.encode(wrapped_doc))
    value = event.data
    assert event.event_source == msgspec.convert(source, EventSource)
    if isinstance(value, dict):  # untyped (points_activated): the inner dict
        assert value == flat
        return
    assert value.event_source == event.event_source
    value.event_source = None
    assert value == flat


def test_wrapped_shape_error_names_the_inner_path() -> None:
    wrapped = {"data": {"order": {"amount": "x"}}, "event_source": {"channel": "API"}}
    event = decode_event(_event(data=wrapped))
    with pytest.raises(EventDecodeError) as info:
        _ = event.data
    assert info.value.reason == "$.data.data.order.amount: expected int, got str"


def test_flat_shape_has_no_event_source() -> None:
    event = decode_event(_event())
    assert isinstance(event.data, OrderData)
    assert event.data.order.amount == 1200
    assert event.event_source is None


def test_unknown_type_is_a_normal_event_with_dict_data() -> None:
    event = decode_event(_event("customer.consents.given", data={"consents": [{"id": "cnst_1"}]}))
    assert event.type == "customer.consents.given"
    assert event.data == {"consents": [{"id": "cnst_1"}]}
    assert event.event_source is None


def test_unknown_type_wrapped_shape_is_unwrapped() -> None:
    data = {"data": {"x": 1}, "event_source": {"channel": "USER_PORTAL"}}
    event = decode_event(_event("customer.new.thing", data=data))
    assert event.data == {"x": 1}
    assert event.event_source == EventSource(channel="USER_PORTAL")


def test_unknown_fields_are_ignored_everywhere() -> None:
    doc = msgspec.json.decode(_event())
    doc["object"] = "event"
    doc["data"]["order"]["new_field"] = {"deep": [1, 2]}
    doc["data"]["brand_new"] = 1
    event = decode_event(msgspec.json.encode(doc))
    assert event.data.order.id == "ord_1"


def test_open_enums_accept_new_values() -> None:
    data = {"order": {"id": "ord_1", "status": "SOME_NEW_STATUS"}}
    assert decode_event(_event(data=data)).data.order.status == "SOME_NEW_STATUS"


def test_balance_may_be_an_int_or_an_object() -> None:
    as_int = decode_event(_event("customer.voucher.gift.balance_added", data={"balance": 500}))
    assert as_int.data.balance == 500
    as_obj = decode_event(
        _event("customer.voucher.gift.balance_added", data={"balance": {"amount": 500}})
    )
    assert as_obj.data.balance.amount == 500


def test_transaction_type_outside_the_documented_enum_is_accepted() -> None:
    data = {"transaction": {"id": "vtx_1", "type": "POINTS_ADDITION"}}
    event = decode_event(_event("customer.voucher.loyalty_card.points_added", data=data))
    assert event.data.transaction.type == "POINTS_ADDITION"


def test_null_members_of_data_are_none() -> None:
    data = {"customer": None, "order": {"id": None, "items": None}}
    event = decode_event(_event(data=data))
    assert event.data.customer is None
    assert event.data.order.id is None


def test_encode_decode_round_trip_of_envelope() -> None:
    event = decode_event(PUBLISHED)
    again = decode_event(msgspec.json.encode(event))
    assert again == event
    assert again.data == event.data
