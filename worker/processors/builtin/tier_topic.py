"""Built-in, opt-in processor: publish each customer's current loyalty tier to a compacted Kafka
topic (`--processors worker.processors.builtin.tier_topic`).

The topic is $WORKER_TIER_TOPIC (default `customer-loyalty-tiers`; create it with
`cleanup.policy=compact`), keyed by customer id, so compaction keeps each customer's latest
tier. From the tier events that set the current tier (upgraded, downgraded, joined, prolonged,
expiration.changed) and `left` (tier null), the value is JSON: customer, campaign, tier id and
name, the event's type, id and `created_at`. It only emits (docs/processors.md: with
`--processing-guarantee exactly-once` each record is published once per event id; by default
a crash may publish one again).

Events can arrive out of order (webhook retries): a record carries `changed_at` so a reader can
ignore one older than what it holds; the topic itself keeps the last one written. A customer in
several loyalty campaigns has one record, of the campaign whose tier changed last.
"""

from __future__ import annotations

import os
from datetime import datetime

import msgspec

from worker.events import Event
from worker.processors.api import Context, processor
from worker.processors.builtin.loyalty_tiers import SHAPES
from worker.processors.data import get, payload, required_text, text

DEFAULT_TIER_TOPIC = "customer-loyalty-tiers"
TOPIC = os.environ.get("WORKER_TIER_TOPIC") or DEFAULT_TIER_TOPIC


class CurrentTier(msgspec.Struct, omit_defaults=False):
    customer_id: str
    campaign_id: str
    tier_id: str | None
    tier_name: str | None
    event_type: str
    event_id: str
    changed_at: datetime


@processor("customer.loyalty.tier.**", name="loyalty_tier_topic")
def loyalty_tier_topic(event: Event, ctx: Context) -> None:
    """Each customer's current loyalty tier, published to a compacted topic."""
    data = payload(event)
    suffix = event.type.removeprefix("customer.loyalty.tier.")
    from_key, to_key, sets_current = SHAPES.get(suffix, (None, "loyalty_tier", False))
    if not sets_current:
        return
    to_tier = get(data, to_key) if to_key else None
    from_tier = get(data, from_key) if from_key else None
    customer_id = required_text(data, "customer", "id")
    campaign_id = (text(data, "campaign", "id") or text(to_tier, "campaign_id")
                   or text(from_tier, "campaign_id") or "")
    ctx.emit_struct(TOPIC, CurrentTier(customer_id, campaign_id, text(to_tier, "id"),
                                       text(to_tier, "name"), event.type, event.id,
                                       event.created_at), key=customer_id)
