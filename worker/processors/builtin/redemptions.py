"""Built-in processor: redemptions succeeded / failed / rolled back per campaign, with failure
codes, from `customer.redemption.**`. One row per event (keyed by event id); the report
aggregates them per campaign."""

from __future__ import annotations

from worker.events import Event
from worker.processors.api import Context, processor
from worker.processors.builtin.event_rows import EventRows
from worker.processors.data import get, integer, payload, text
from worker.processors.sql import transaction_sql

REDEMPTIONS = EventRows(
    "rm_redemptions",
    ("redemption_id TEXT", "customer_id TEXT", "campaign_id TEXT NOT NULL", "campaign_name TEXT",
     "voucher_code TEXT", "outcome TEXT NOT NULL", "failure_code TEXT", "failure_message TEXT",
     "amount BIGINT"),
    index="rm_redemptions_campaign", index_columns=("campaign_id", "outcome"))

OUTCOMES = {
    "customer.redemption.succeeded": "succeeded",
    "customer.redemption.failed": "failed",
    "customer.redemption.rollback.succeeded": "rolled_back",
    "customer.redemption.rollback.failed": "rollback_failed",
}


@processor("customer.redemption.**", name="redemptions", setup=REDEMPTIONS.setup,
           requires_transaction=True)
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
    REDEMPTIONS.insert(sql, event, text(redemption, "id"), text(data, "customer", "id"),
                       campaign_id, campaign_name, text(data, "voucher", "code"), outcome,
                       failure_code, failure_message, integer(redemption, "amount"))
