"""The event model's rule: strict where meaning depends on a field, lenient where it only
describes (see `worker.events.models`). The shapes below are the ones Voucherify's own published
examples have (written here by hand, not copied): each must decode, typed."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from worker.errors import EventDecodeError
from worker.events import decode_event
from worker.events.models import CustomerData, LoyaltyTierChangedData, PointsAddedData


def _event(type_: str, data: Any, **envelope: Any) -> bytes:
    doc = {"id": "evcus_1", "type": type_, "created_at": "2024-03-11T12:06:34.423Z",
           "group_id": "v-1", "data": data, **envelope}
    return msgspec.json.encode({k: v for k, v in doc.items() if v is not _DROP})


_DROP = object()

# field path inside data -> an unexpected shape that only describes
DESCRIPTIVE = {
    "referrals_campaigns_as_strings": (["customer", "referrals"], {"campaigns": ["summer_24"]}),
    "summary_as_a_string": (["customer", "summary"], "n/a"),
    "address_as_a_string": (["customer", "address"], "125 Maple Leaf Road, Toronto"),
    "metadata_as_a_list": (["customer", "metadata"], [1, 2]),
    "name_as_a_number": (["customer", "name"], 42),
    "loyalty_with_odd_totals": (["customer", "loyalty"], {"points": "45"}),
    "birthdate_as_an_object": (["customer", "birthdate"], {"y": 1990}),
    "object_tag_as_a_number": (["customer", "object"], 1),
    "record_timestamp_as_a_number": (["customer", "created_at"], 1710158794),
}


@pytest.mark.parametrize("name", list(DESCRIPTIVE))
def test_a_descriptive_field_of_any_shape_decodes(name: str) -> None:
    path, value = DESCRIPTIVE[name]
    data: dict[str, Any] = {"customer": {"id": "cust_1"}}
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    event = decode_event(_event("customer.updated", data))
    typed = event.data
    assert isinstance(typed, CustomerData)
    assert typed.customer is not None and typed.customer.id == "cust_1"
    assert getattr(typed.customer, path[-1]) == value


def test_campaign_and_voucher_details_of_any_shape_decode() -> None:
    data = {"customer": {"id": "cust_1"},
            "campaign": {"id": "camp_1", "active": "true", "start_date": 0, "metadata": "x",
                         "description": ["a"]},
            "voucher": {"id": "v_1", "code": "LC-1", "discount": "10%", "is_referral_code": "no",
                        "loyalty_card": {"points": 120, "balance": 80}},
            "balance": {"type": "loyalty_card", "points": 20, "balance": 80},
            "transaction": {"id": "vtx_1", "type": "POINTS_ADDITION", "details": [1],
                            "reason": {"why": "bonus"}}}
    typed = decode_event(_event("customer.voucher.loyalty_card.points_added", data)).data
    assert isinstance(typed, PointsAddedData)
    assert typed.campaign is not None and typed.campaign.active == "true"
    assert typed.voucher is not None and typed.voucher.loyalty_card is not None
    assert typed.voucher.loyalty_card.points == 120


# what carries meaning stays strict: a wrong shape is a schema error that names its path
STRICT = {
    "tier_points_as_a_string": (
        "customer.loyalty.tier.upgraded",
        {"loyalty_tier_to": {"id": "ltr_1", "points": {"from": "251", "to": 350}}},
        "$.data.loyalty_tier_to.points.from: expected int, got str"),
    "tier_id_as_a_number": (
        "customer.loyalty.tier.upgraded", {"loyalty_tier_to": {"id": 7}},
        "$.data.loyalty_tier_to.id: expected str, got int"),
    "customer_id_as_an_object": (
        "customer.updated", {"customer": {"id": {"id": "cust_1"}}},
        "$.data.customer.id: expected str, got object"),
    "balance_points_as_a_string": (
        "customer.voucher.loyalty_card.points_added", {"balance": {"points": "20"}},
        "$.data.balance.points: expected int, got str"),
    "transaction_type_as_a_number": (
        "customer.voucher.loyalty_card.points_added", {"transaction": {"type": 1}},
        "$.data.transaction.type: expected str, got int"),
    "order_amount_as_a_string": (
        "customer.order.paid", {"order": {"id": "ord_1", "amount": "100"}},
        "$.data.order.amount: expected int, got str"),
    "event_time_as_a_number": (
        "customer.loyalty.tier.upgraded", {"created_at": 1710158794},
        "$.data.created_at: expected str, got int"),
    "customer_as_a_string": (
        "customer.updated", {"customer": "cust_1"}, "$.data.customer: expected object, got str"),
}


@pytest.mark.parametrize("name", list(STRICT))
def test_a_field_that_carries_meaning_stays_strict(name: str) -> None:
    type_, data, reason = STRICT[name]
    event = decode_event(_event(type_, data))
    with pytest.raises(EventDecodeError) as info:
        _ = event.data
    assert (info.value.error_class, info.value.reason) == ("schema", reason)


def test_an_event_without_group_id_is_normal_and_says_so() -> None:
    up = {"loyalty_tier_to": {"id": "ltr_1", "points": {"from": 251, "to": 350}}}
    for envelope in ({"group_id": _DROP}, {"group_id": None}):
        event = decode_event(_event("customer.loyalty.tier.upgraded", up, **envelope))
        assert event.group_id is None
        assert isinstance(event.data, LoyaltyTierChangedData)


def test_absent_is_missing_and_null_is_null() -> None:
    absent = decode_event(_event("customer.updated", _DROP))
    with pytest.raises(EventDecodeError) as info:
        _ = absent.data
    assert info.value.reason == "$.data: missing required field"
    null = decode_event(_event("customer.updated", None))
    with pytest.raises(EventDecodeError) as info:
        _ = null.data
    assert info.value.reason == "$.data: expected object, got null"
    with pytest.raises(EventDecodeError) as info:
        decode_event(_event("customer.updated", {}, created_at=_DROP))
    assert info.value.reason == "$.created_at: missing required field"
    with pytest.raises(EventDecodeError) as info:
        decode_event(_event("customer.updated", {}, created_at=None))
    assert info.value.reason == "$.created_at: expected datetime, got null"


def test_the_legacy_data_json_shape_has_its_documented_outcome() -> None:
    """Older feeds carried `data_json` (a JSON string) and no `data`: the envelope decodes (a
    processor that does not read data still runs), reading `event.data` says it is missing."""
    value = _event("customer.created", _DROP, group_id=_DROP,
                   data_json='{"customer": {"id": "cust_1"}}')
    event = decode_event(value)
    assert (event.id, event.group_id) == ("evcus_1", None)
    with pytest.raises(EventDecodeError) as info:
        _ = event.data
    assert (info.value.error_class, info.value.reason) == (
        "schema", "$.data: missing required field")
