"""Built-in processor: message delivery sent / failed / recovered per channel.

The issue sketches the pattern `customer.*.{sent,failed,recovered}`, but that also matches
`customer.redemption.failed`, `customer.publication.failed` and `customer.validation.failed`,
which are not deliveries; so the pattern names the channels of the seed. A new channel is one
more word in CHANNELS.
"""

from __future__ import annotations

from worker.events import Event
from worker.processors.api import Context, processor
from worker.processors.builtin.event_rows import EventRows
from worker.processors.data import payload, text
from worker.processors.sql import transaction_sql

CHANNELS = ("sms", "email", "activecampaign", "braze", "mailchimp", "intercom", "shopify",
            "klaviyo", "batch")
PATTERN = "customer.{" + ",".join(CHANNELS) + "}.{sent,failed,recovered}"

DELIVERIES = EventRows(
    "rm_message_deliveries",
    ("channel TEXT NOT NULL", "outcome TEXT NOT NULL", "customer_id TEXT",
     "distribution_id TEXT", "occurred_at TEXT"),
    index="rm_message_deliveries_channel", index_columns=("channel", "outcome"))


@processor(PATTERN, name="messaging_delivery", setup=DELIVERIES.setup, requires_transaction=True)
def messaging_delivery(event: Event, ctx: Context) -> None:
    """Message deliveries sent / failed / recovered per channel."""
    sql = transaction_sql(ctx.transaction, "messaging_delivery")
    data = payload(event)
    _, channel, outcome = event.type.split(".")
    DELIVERIES.insert(sql, event, channel, outcome, text(data, "customer", "id"),
                      text(data, "distribution", "id"), text(data, f"{outcome}_at"))
