"""Property-based tests: valid events round-trip; no bytes make the decoder raise anything but
EventDecodeError (neither `decode_event` nor the `event.data` access)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.events.helpers import drop_nulls, load_fixtures
from worker.errors import EventDecodeError
from worker.events import KNOWN_TYPES, decode_event

FIXTURES = {e["type"]: e for e in load_fixtures()}
ERROR_CLASSES = {"undecodable", "invalid_json", "not_an_object", "schema"}

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# For typed data: typed structs drop null members, so free-form values here have none.
no_null_scalars = st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
no_null_values = st.recursive(
    no_null_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.text(min_size=1, max_size=40)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    type_ = draw(st.sampled_from(sorted(KNOWN_TYPES)) | st.text(min_size=1, max_size=30))
    base = FIXTURES.get(type_, FIXTURES["customer.created"])
    data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(base["data"]))
    # Free-form members (metadata) take any JSON; typed members keep their shape.
    if isinstance(data.get("customer"), dict):
        data["customer"]["metadata"] = draw(
            st.dictionaries(st.text(max_size=8), no_null_values, max_size=4)
        )
        data["customer"]["name"] = draw(st.text(max_size=30) | st.none())
    if draw(st.booleans()):
        data["brand_new_field"] = draw(json_values)
    created = draw(st.datetimes(timezones=st.just(UTC)))
    return {
        "id": draw(ids),
        "type": type_,
        "data": data,
        "created_at": created,
        "group_id": draw(ids),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events())
def test_valid_events_round_trip(doc: dict[str, Any]) -> None:
    value = msgspec.json.encode(doc)
    event = decode_event(value)
    assert (event.id, event.type, event.group_id) == (doc["id"], doc["type"], doc["group_id"])
    assert event.created_at == doc["created_at"]
    data = event.data
    if isinstance(data, dict):  # unknown type or no published shape: the data as sent
        assert data == doc["data"]
    else:  # typed: everything but the unknown field, nulls as unset
        expected = drop_nulls(doc["data"])
        expected.pop("brand_new_field", None)
        assert msgspec.to_builtins(data) == expected
    # and the decoded event encodes back to an equal event
    again = decode_event(msgspec.json.encode(event))
    assert again == event
    assert again.data == event.data


def _check_only_documented_errors(value: bytes) -> None:
    try:
        event = decode_event(value)
        _ = event.data
        _ = event.event_source
    except EventDecodeError as exc:
        assert exc.error_class in ERROR_CLASSES
        assert exc.reason.startswith("$")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_event_decode_error(value: bytes) -> None:
    _check_only_documented_errors(value)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A real event with a few bytes inserted, deleted or replaced: near-valid JSON, which is
    where decoders break."""
    base = bytearray(msgspec.json.encode(FIXTURES[draw(st.sampled_from(sorted(FIXTURES)))]))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(base) - 1))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(
            st.binary(min_size=1, max_size=3)
            | st.sampled_from([b'"', b"{", b"}", b"[", b",", b":", b"1", b"\\"])
        )
        if op == "insert":
            base[pos:pos] = byte
        elif op == "delete":
            del base[pos : pos + len(byte)]
        else:
            base[pos : pos + len(byte)] = byte
    return bytes(base)


@settings(max_examples=1000, deadline=None)
@given(mutated_events())
def test_mutated_events_raise_only_event_decode_error(value: bytes) -> None:
    _check_only_documented_errors(value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(FIXTURES)), json_values)
def test_any_json_in_place_of_data_raises_only_event_decode_error(type_: str, data: Any) -> None:
    doc = {**FIXTURES[type_], "data": data}
    _check_only_documented_errors(msgspec.json.encode(doc))
