"""Built-in processor: current loyalty tier per customer and campaign, and tier history.

From `customer.loyalty.tier.**`:
- upgraded / downgraded: from `loyalty_tier_from` to `loyalty_tier_to`; the current tier is `to`;
- joined / prolonged / expiration.changed: the current tier is `loyalty_tier`;
- left: the customer has no tier in that campaign any more (tier columns NULL);
- any other tier type: history only.
Events arrive out of order (webhook retries), so the current tier only moves to an event whose
`created_at` is not older than the one it shows. History rows are keyed by event id.
"""

from __future__ import annotations

from typing import Any

from worker.events import Event
from worker.processors.api import Context, processor
from worker.processors.data import get, payload, required_text, text
from worker.processors.sql import Sql, transaction_sql

TABLES = (
    """CREATE TABLE IF NOT EXISTS rm_loyalty_tier_current (
        customer_id TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        campaign_name TEXT,
        tier_id TEXT,
        tier_name TEXT,
        last_event_type TEXT NOT NULL,
        changed_at TEXT NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (customer_id, campaign_id))""",
    """CREATE TABLE IF NOT EXISTS rm_loyalty_tier_history (
        event_id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        from_tier_id TEXT,
        from_tier_name TEXT,
        to_tier_id TEXT,
        to_tier_name TEXT,
        expiration_date TEXT,
        created_at TEXT NOT NULL)""",
)

_INSERT_HISTORY = """INSERT INTO rm_loyalty_tier_history (event_id, customer_id, campaign_id,
    event_type, from_tier_id, from_tier_name, to_tier_id, to_tier_name, expiration_date,
    created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"""

_UPSERT_CURRENT = """INSERT INTO rm_loyalty_tier_current (customer_id, campaign_id,
    campaign_name, tier_id, tier_name, last_event_type, changed_at, event_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (customer_id, campaign_id) DO UPDATE SET
        campaign_name = COALESCE(excluded.campaign_name, rm_loyalty_tier_current.campaign_name),
        tier_id = excluded.tier_id, tier_name = excluded.tier_name,
        last_event_type = excluded.last_event_type, changed_at = excluded.changed_at,
        event_id = excluded.event_id
    WHERE excluded.changed_at >= rm_loyalty_tier_current.changed_at"""

# event type suffix -> (data key of the "from" tier, data key of the "to" tier, sets current?)
SHAPES: dict[str, tuple[str | None, str | None, bool]] = {
    "upgraded": ("loyalty_tier_from", "loyalty_tier_to", True),
    "downgraded": ("loyalty_tier_from", "loyalty_tier_to", True),
    "joined": (None, "loyalty_tier", True),
    "prolonged": (None, "loyalty_tier", True),
    "expiration.changed": (None, "loyalty_tier", True),
    "left": ("loyalty_tier", None, True),
}


def setup(conn: Any) -> None:
    Sql(conn).run_all(TABLES)


@processor("customer.loyalty.tier.**", name="loyalty_tiers", setup=setup,
           requires_transaction=True)
def loyalty_tiers(event: Event, ctx: Context) -> None:
    """Current tier per customer and campaign, and tier history."""
    sql = transaction_sql(ctx.transaction, "loyalty_tiers")
    data = payload(event)
    suffix = event.type.removeprefix("customer.loyalty.tier.")
    from_key, to_key, sets_current = SHAPES.get(suffix, (None, "loyalty_tier", False))
    from_tier = get(data, from_key) if from_key else None
    to_tier = get(data, to_key) if to_key else None
    customer_id = required_text(data, "customer", "id")
    campaign_id = (text(data, "campaign", "id") or text(to_tier, "campaign_id")
                   or text(from_tier, "campaign_id") or "")
    inserted = sql.rowcount(_INSERT_HISTORY, (
        event.id, customer_id, campaign_id, event.type,
        text(from_tier, "id"), text(from_tier, "name"), text(to_tier, "id"), text(to_tier, "name"),
        text(data, "expiration_date"), event.created_at))
    if inserted and sets_current:
        sql.execute(_UPSERT_CURRENT, (
            customer_id, campaign_id, text(data, "campaign", "name"),
            text(to_tier, "id"), text(to_tier, "name"), event.type, event.created_at, event.id))
