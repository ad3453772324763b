"""Every example Voucherify publishes decodes with the project's own decoder, typed (opt-in:
VOUCHERIFY_OPENAPI_GIT=<git dir of voucherifyio/voucherify-openapi>; see
`tests/events/published`). Where an example is not a usable event on its own (an activity
reference nested in another object: no `data`, sometimes no `created_at`), the documented
outcome is asserted instead. The provenance of each example is written to
`published-examples.tsv` in the test's temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from tests.events.published import Example, all_examples
from worker.errors import EventDecodeError
from worker.events import decode_event
from worker.events.envelope import Event
from worker.events.registry import DATA_TYPES

SOURCE = os.environ.get("VOUCHERIFY_OPENAPI_GIT")
pytestmark = pytest.mark.skipif(
    not SOURCE, reason="opt-in: set VOUCHERIFY_OPENAPI_GIT to a git copy of "
    "voucherifyio/voucherify-openapi (its examples are not copied into this repository)")


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[Example]:
    out = tmp_path_factory.mktemp("published")
    found = all_examples(Path(str(SOURCE)), out)
    with (out / "published-examples.tsv").open("w") as f:
        for ex in found:
            f.write(f"{ex.kind}\t{ex.type}\t{ex.path}\t{ex.commit}\t{ex.place}\n")
    print(f"{len(found)} published examples; provenance in {out / 'published-examples.tsv'}")
    return found


def _typed(event: Event, where: str) -> None:
    data = event.data
    expected = DATA_TYPES.get(event.type)
    if expected is not None:
        assert isinstance(data, expected), f"{where}: {type(data).__name__}"
    else:
        assert isinstance(data, dict), where


def test_every_per_type_data_example_decodes_typed(examples: list[Example]) -> None:
    data = [ex for ex in examples if ex.kind == "data"]
    assert len(data) >= 60  # events-customer.json and OpenAPIWebhooks.json, customer types
    assert sum(ex.type in DATA_TYPES for ex in data) >= 60
    for ex in data:
        value = (b'{"id":"evcus_published","type":' + msgspec.json.encode(ex.type)
                 + b',"created_at":"2024-01-01T00:00:00Z","data":'
                 + msgspec.json.encode(ex.value) + b"}")
        _typed(decode_event(value), ex.source)


def test_every_webhook_delivery_decodes_typed(examples: list[Example]) -> None:
    deliveries = [ex for ex in examples if ex.kind == "delivery"]
    customer = [ex for ex in deliveries if ex.type.startswith("customer.")]
    assert len(deliveries) >= 50 and len(customer) >= 8
    for ex in deliveries:
        event = decode_event(msgspec.json.encode(ex.value))
        assert event.webhook_id == ex.value["id"], ex.source
        assert event.id == ex.value["event"]["id"], ex.source
        _typed(event, ex.source)


def test_every_published_activity_decodes_or_has_its_documented_outcome(
        examples: list[Example]) -> None:
    events = [ex for ex in examples if ex.kind == "event"]
    with_data = [ex for ex in events if isinstance(ex.value.get("data"), dict)]
    assert len(events) >= 25 and len(with_data) >= 4
    assert all("group_id" not in ex.value for ex in with_data)  # the reason they failed before
    for ex in events:
        value = msgspec.json.encode(ex.value)
        if "created_at" not in ex.value:  # a reference to an event inside another object
            with pytest.raises(EventDecodeError) as info:
                decode_event(value)
            assert info.value.reason == "$.created_at: missing required field", ex.source
            continue
        event = decode_event(value)
        assert event.group_id == ex.value.get("group_id"), ex.source
        if ex in with_data:
            _typed(event, ex.source)
        else:  # id/type/created_at only: usable by processors that do not read data
            with pytest.raises(EventDecodeError) as info:
                _ = event.data
            assert info.value.reason == "$.data: missing required field", ex.source
