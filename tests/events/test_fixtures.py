"""A realistic event of every one of the 74 types decodes to its typed `data`, losing nothing.

The fixtures (data/fixtures.json) were made once by the generator and are committed, so a change
of the generator cannot silently change what is tested; shapes follow domain.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from tests.events.helpers import DATA, drop_nulls, load_fixtures
from worker.events import KNOWN_TYPES, decode_event
from worker.events.models import EventData
from worker.events.registry import DATA_TYPES
from worker.events.types import UNTYPED_TYPES

FIXTURES = load_fixtures()

# Id prefixes Voucherify uses, by the key that holds the object.
PREFIXES = {
    "customer": "cust_",
    "referrer": "cust_",
    "campaign": "camp_",
    "voucher": "v_",
    "source_voucher": "v_",
    "destination_voucher": "v_",
    "loyalty_tier": "ltr_",
    "loyalty_tier_from": "ltr_",
    "loyalty_tier_to": "ltr_",
    "transaction": "vtx_",
    "order": "ord_",
    "pending_points": "lopp_",
    "reward_redemption": "rewr_",
    "unconfirmed_customer": "ucust_",
    "event": "ev",  # custom events use event_, the trigger of a reward evcus_
}


def test_one_fixture_per_known_type() -> None:
    types = [e["type"] for e in FIXTURES]
    assert len(types) == 74
    assert set(types) == set(KNOWN_TYPES)


@pytest.mark.parametrize("raw", FIXTURES, ids=[e["type"] for e in FIXTURES])
def test_fixture_decodes_to_its_typed_data_without_loss(raw: dict[str, Any]) -> None:
    event = decode_event(msgspec.json.encode(raw))
    assert event.id.startswith("evcus_")
    assert event.group_id.startswith("v-")
    assert event.created_at.tzinfo is not None
    data = event.data
    if raw["type"] in UNTYPED_TYPES:
        assert data == raw["data"]
        return
    assert type(data) is DATA_TYPES[raw["type"]]
    assert isinstance(data, EventData)
    assert data.event_source is None
    # Every key of the fixture was understood with the right type: re-encoding the typed value
    # gives back the fixture's data (minus explicit nulls, which decode to the same None).
    assert msgspec.to_builtins(data) == drop_nulls(raw["data"])
    for key, prefix in PREFIXES.items():
        obj = raw["data"].get(key)
        if isinstance(obj, dict) and "id" in obj:
            assert obj["id"].startswith(prefix), (key, obj["id"])
            assert getattr(data, key).id == obj["id"]


def test_published_example_decodes() -> None:
    event = decode_event((DATA / "published_tier_upgraded.json").read_bytes())
    assert event.id == "evcus_0e30613ad01f0445aa"
    assert event.created_at == datetime(2024, 3, 11, 12, 6, 34, 423000, tzinfo=UTC)
    assert event.data.loyalty_tier_to.points.from_ == 251
    assert event.data.loyalty_tier_from.name == "Loyal silver"
    assert event.data.customer.id == "cust_2p0TvCOvB25HWUrW9JFf4czJ"
