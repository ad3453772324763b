"""A corpus of bad inputs, each with its documented outcome.

Invalid UTF-8 is fatal where the worker reads text: the envelope fields in decode_event, the known
fields of `data` on `event.data`; bytes inside ignored fields are never decoded (the validate
command is strict about whole lines).

Outcome: ("ok", None) decodes (and `event.data` too); ("envelope", class) makes `decode_event`
raise EventDecodeError(class); ("data", class) decodes the envelope but `event.data` raises.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from worker.errors import EventDecodeError
from worker.events import decode_event
from worker.events.envelope import check_utf8

GOOD: dict[str, Any] = {
    "id": "evcus_0e2905d4db185a04ad",
    "type": "customer.loyalty.tier.upgraded",
    "created_at": "2024-03-11T12:06:34.423Z",
    "group_id": "v-0e30613ab3ad14a9c1",
    "data": {
        "customer": {"id": "cust_2p0TvCOvB25HWUrW9JFf4czJ", "name": "Alex Doe"},
        "loyalty_tier_to": {"id": "ltr_0e30613ad01f044516", "points": {"from": 251, "to": 350}},
    },
}
GOOD_BYTES = msgspec.json.encode(GOOD)


def with_(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return msgspec.json.encode({k: v for k, v in doc.items() if v is not _DROP})


def with_data(path: list[str], value: Any) -> bytes:
    doc = msgspec.json.decode(GOOD_BYTES)
    node = doc["data"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return msgspec.json.encode(doc)


_DROP = object()
NEST = 1000

# name -> (input, stage, error class, reason or a prefix of it)
CORPUS: dict[str, tuple[bytes | None, str, str | None, str | None]] = {
    "tombstone": (None, "envelope", "undecodable", "$: message has no value (tombstone)"),
    "invalid_utf8_in_envelope": (
        GOOD_BYTES.replace(b"evcus_", b"evcus\xc3_"), "envelope", "undecodable",
        "$: invalid UTF-8",
    ),
    "invalid_utf8_inside_data": (
        GOOD_BYTES.replace(b"Alex", b"Al\xc3\x28x"), "data", "undecodable",
        "$.data: invalid UTF-8",
    ),
    "overlong_utf8_inside_data": (
        GOOD_BYTES.replace(b"Alex", b"Al\xc0\xafx"), "data", "undecodable", None,
    ),
    "invalid_utf8_in_an_ignored_field_is_never_read": (
        with_(extra="x").replace(b'"extra":"x"', b'"extra":"\xff"'), "ok", None, None,
    ),
    "lone_surrogate_escape": (
        GOOD_BYTES.replace(b"evcus_", b"evcus\\ud800"), "envelope", "invalid_json", None,
    ),
    "binary_junk": (b"\xff\xfe\x00junk", "envelope", "undecodable", "$: invalid UTF-8 at byte 0"),
    "latin1_and_truncated": (
        GOOD_BYTES.replace(b"Alex", "Aléx".encode("latin-1"))[:-5], "envelope", "undecodable",
        None,
    ),
    "truncated_json": (GOOD_BYTES[:-7], "envelope", "invalid_json", "$: input data was truncated"),
    "empty_bytes": (b"", "envelope", "invalid_json", "$: input data was truncated"),
    "trailing_garbage": (GOOD_BYTES + b" x", "envelope", "invalid_json", "$: JSON is malformed"),
    "two_objects_on_a_line": (GOOD_BYTES + GOOD_BYTES, "envelope", "invalid_json", None),
    "json_array": (b"[" + GOOD_BYTES + b"]", "envelope", "not_an_object",
                   "$: expected object, got array"),
    "json_string": (b'"evcus_1"', "envelope", "not_an_object", "$: expected object, got str"),
    "json_number": (b"42", "envelope", "not_an_object", "$: expected object, got int"),
    "json_null": (b"null", "envelope", "not_an_object", "$: expected object, got null"),
    "json_true": (b"true", "envelope", "not_an_object", "$: expected object, got bool"),
    "missing_id": (with_(id=_DROP), "envelope", "schema", "$.id: missing required field"),
    "missing_type": (with_(type=_DROP), "envelope", "schema", "$.type: missing required field"),
    "missing_created_at": (with_(created_at=_DROP), "envelope", "schema",
                           "$.created_at: missing required field"),
    "null_id": (with_(id=None), "envelope", "schema", "$.id: expected str, got null"),
    "null_type": (with_(type=None), "envelope", "schema", "$.type: expected str, got null"),
    "empty_group_id": (with_(group_id=""), "envelope", "schema",
                       "$.group_id: expected str of length >= 1"),
    "numeric_group_id": (with_(group_id=7), "envelope", "schema",
                         "$.group_id: expected str, got int"),
    "empty_id": (with_(id=""), "envelope", "schema", "$.id: expected str of length >= 1"),
    "numeric_id": (with_(id=123), "envelope", "schema", "$.id: expected str, got int"),
    "malformed_created_at_from_domain_md": (
        with_(created_at="2024-05-13T12: 26: 06.250Z"), "envelope", "schema",
        "$.created_at: invalid RFC3339 encoded datetime",
    ),
    "created_at_without_time_zone": (
        with_(created_at="2024-05-13T12:26:06.250"), "envelope", "schema",
        "$.created_at: expected datetime with a timezone component",
    ),
    "created_at_as_number": (with_(created_at=1710158794), "envelope", "schema",
                             "$.created_at: expected datetime, got int"),
    "nesting_1000_levels_in_data": (
        with_(data={"metadata": "x"}).replace(b'"x"', b"[" * NEST + b"]" * NEST),
        "envelope", "invalid_json", "$: JSON nested too deeply",
    ),
    "wrong_type_deep_in_data": (
        with_data(["loyalty_tier_to", "points", "from"], "251"), "data", "schema",
        "$.data.loyalty_tier_to.points.from: expected int, got str",
    ),
    "object_where_str_expected_in_data": (
        with_data(["customer", "id"], {"id": 1}), "data", "schema",
        "$.data.customer.id: expected str, got object",
    ),
    "data_is_an_array": (with_(data=[1]), "data", "schema", "$.data: expected object, got array"),
    "data_missing_for_typed_type": (with_(data=_DROP), "data", "schema",
                                    "$.data: missing required field"),
    "data_missing_for_unknown_type": (with_(data=_DROP, type="customer.consents.given"), "data",
                                      "schema", "$.data: missing required field"),
    "data_null_for_typed_type": (with_(data=None), "data", "schema",
                                 "$.data: expected object, got null"),
    # Tolerated:
    "missing_group_id": (with_(group_id=_DROP), "ok", None, None),
    "null_group_id": (with_(group_id=None), "ok", None, None),
    "duplicate_keys_last_wins": (
        GOOD_BYTES.replace(b'{"id":', b'{"id":"evcus_first","id":', 1), "ok", None, None,
    ),
    "one_megabyte_string": (with_data(["customer", "name"], "x" * 1_000_000), "ok", None, None),
    "unknown_type": (with_(type="customer.consents.given"), "ok", None, None),
    "unknown_fields": (with_(object="event", extra={"a": [1, {"b": None}]}), "ok", None, None),
    "nested_nulls_in_data": (with_data(["loyalty_tier_to", "points"], None), "ok", None, None),
    "id_without_prefix": (with_(id="0e2905d4db185a04ad"), "ok", None, None),
    "non_ascii_text": (with_data(["customer", "name"], "Zoë Łukasz 日本"), "ok", None, None),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CORPUS))
def test_bad_input_has_its_documented_outcome(name: str) -> None:
    value, stage, error_class, reason = CORPUS[name]
    if stage == "envelope":
        with pytest.raises(EventDecodeError) as info:
            decode_event(value)
    else:
        event = decode_event(value)
        if stage == "ok":
            _ = event.data
            return
        with pytest.raises(EventDecodeError) as info:
            _ = event.data
    assert info.value.error_class == error_class
    assert info.value.reason.startswith("$")
    if reason is not None:
        assert info.value.reason.startswith(reason), info.value.reason


def test_duplicate_keys_keep_the_last_value() -> None:
    value = GOOD_BYTES.replace(b'{"id":', b'{"id":"evcus_first","id":', 1)
    assert decode_event(value).id == GOOD["id"]


def test_one_megabyte_string_is_kept_whole() -> None:
    event = decode_event(with_data(["customer", "name"], "x" * 1_000_000))
    assert len(event.data.customer.name) == 1_000_000


def test_check_utf8_is_strict_about_the_whole_value() -> None:
    value = with_(extra="x").replace(b'"extra":"x"', b'"extra":"\xff"')
    with pytest.raises(EventDecodeError) as info:
        check_utf8(value)
    assert info.value.error_class == "undecodable"
    assert info.value.reason.startswith("$: invalid UTF-8 at byte ")
    check_utf8(GOOD_BYTES)
    check_utf8("Zoë".encode())


def test_event_decode_error_is_non_retriable() -> None:
    from worker.errors import NonRetriableError

    with pytest.raises(NonRetriableError):
        decode_event(b"[]")
