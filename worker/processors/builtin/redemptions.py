"""Built-in processor: redemptions succeeded / failed / rolled back per campaign, with failure
codes, from `customer.redemption.**`. One row per event (keyed by event id); the report
aggregates them per campaign."""

from __future__ import annotations

from typing import Any

from worker.events import Event
from worker.processors.api import Context, processor
from worker.processors.data import get, integer, payload, text
from worker.processors.sql import Sql, transaction_sql

TABLES = (
    """CREATE TABLE IF NOT EXISTS rm_redemptions (
        event_id TEXT PRIMARY KEY,
        redemption_id TEXT,
        customer_id TEXT,
        campaign_id TEXT NOT NULL,
        campaign_name TEXT,
        voucher_code TEXT,
        outcome TEXT NOT NULL,
        failure_code TEXT,
        failure_message TEXT,
        amount BIGINT,
        created_at TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS rm_redemptions_campaign
        ON rm_redemptions (campaign_id, outcome)""",
)

OUTCOMES = {
    "customer.redemption.succeeded": "succeeded",
    "customer.redemption.failed": "failed",
    "customer.redemption.rollback.succeeded": "rolled_back",
    "customer.redemption.rollback.failed": "rollback_failed",
}

_INSERT = """INSERT INTO rm_redemptions (event_id, redemption_id, customer_id, campaign_id,
    campaign_name, voucher_code, outcome, failure_code, failure_message, amount, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"""


def setup(conn: Any) -> None:
    Sql(conn).run_all(TABLES)


@processor("customer.redemption.**", name="redemptions", setup=setup, requires_transaction=True)
def redemptions(event: Event, ctx: Context) -> None:
    """Redemptions succeeded / failed / rolled back per campaign, with failure codes."""
    sql = transaction_sql(ctx.transaction, "redemptions")
    data = payload(event)
    outcome = OUTCOMES.get(event.type) or event.type.removeprefix("customer.redemption.").replace(
        ".", "_")
    redemption = get(data, "redemption")
    rollback = get(data, "redemption_rollback")
    failure_code = failure_message = None
    if outcome == "rollback_failed":
        failure_code = text(rollback, "failure_code") or text(redemption, "failure_code")
        failure_message = text(rollback, "failure_message") or text(redemption, "failure_message")
    elif outcome == "failed":
        failure_code = text(redemption, "failure_code")
        failure_message = text(redemption, "failure_message")
    if outcome in ("failed", "rollback_failed") and not failure_code:
        failure_code = "unknown"
    campaign_id = (text(data, "campaign", "id") or text(data, "voucher", "campaign_id")
                   or text(data, "promotion_tier", "campaign", "id") or "")
    campaign_name = (text(data, "campaign", "name") or text(data, "voucher", "campaign")
                     or text(data, "promotion_tier", "campaign", "name"))
    sql.execute(_INSERT, (
        event.id, text(redemption, "id"), text(data, "customer", "id"), campaign_id,
        campaign_name, text(data, "voucher", "code"), outcome, failure_code, failure_message,
        integer(redemption, "amount"), event.created_at))
