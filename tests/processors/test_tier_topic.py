"""The opt-in tier publisher: each customer's current loyalty tier as a record keyed by customer
id, through the harness (whose output sink keeps what processors emit)."""

from __future__ import annotations

import json
from typing import Any

from worker.processors.builtin.tier_topic import TOPIC
from worker.testing import Harness

CUSTOMER = {"id": "cust_1", "object": "customer"}
CAMPAIGN = {"id": "camp_1", "name": "Loyalty programme", "object": "campaign"}
GOLD = {"id": "ltr_gold", "name": "Loyal gold"}
SILVER = {"id": "ltr_silver", "name": "Loyal silver"}


def tier_event(n: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evcus_{n:018x}", "type": f"customer.loyalty.tier.{kind}",
            "group_id": f"v-{n}", "created_at": f"2024-03-0{n}T00:00:00.000Z",
            "data": {"customer": CUSTOMER, "campaign": CAMPAIGN, **data}}


def test_tier_changes_are_published_keyed_by_customer_once_per_event() -> None:
    with Harness(modules=["worker.processors.builtin.tier_topic"]) as h:
        up = tier_event(1, "upgraded", {"loyalty_tier_from": SILVER, "loyalty_tier_to": GOLD})
        h.send(up)
        h.send(up)  # redelivered: nothing more is published
        h.send(tier_event(2, "left", {"loyalty_tier": GOLD}))
        h.send(tier_event(3, "points.added", {"loyalty_tier": GOLD}))  # not a tier change
        records = h.emitted
    assert [(r.topic, r.key) for r in records] == [(TOPIC, b"cust_1")] * 2
    first, left = (json.loads(r.value) for r in records)
    assert first == {"customer_id": "cust_1", "campaign_id": "camp_1", "tier_id": "ltr_gold",
                     "tier_name": "Loyal gold", "event_type": "customer.loyalty.tier.upgraded",
                     "event_id": "evcus_000000000000000001",
                     "changed_at": "2024-03-01T00:00:00Z"}
    assert left["tier_id"] is None and left["event_type"].endswith(".left")
