"""Built-in processor: message delivery sent / failed / recovered per channel.

The issue sketches the pattern `customer.*.{sent,failed,recovered}`, but that also matches
`customer.redemption.failed`, `customer.publication.failed` and `customer.validation.failed`,
which are not deliveries; so the pattern names the channels of the seed. A new channel is one
more word in CHANNELS.
"""

from __future__ import annotations

from typing import Any

from worker.events import Event
from worker.processors.api import Context, processor
from worker.processors.data import payload, text
from worker.processors.sql import Sql, transaction_sql

CHANNELS = ("sms", "email", "activecampaign", "braze", "mailchimp", "intercom", "shopify",
            "klaviyo", "batch")
PATTERN = "customer.{" + ",".join(CHANNELS) + "}.{sent,failed,recovered}"

TABLES = (
    """CREATE TABLE IF NOT EXISTS rm_message_deliveries (
        event_id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        outcome TEXT NOT NULL,
        customer_id TEXT,
        distribution_id TEXT,
        occurred_at TEXT,
        created_at TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS rm_message_deliveries_channel
        ON rm_message_deliveries (channel, outcome)""",
)

_INSERT = """INSERT INTO rm_message_deliveries (event_id, channel, outcome, customer_id,
    distribution_id, occurred_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (event_id) DO NOTHING"""


def setup(conn: Any) -> None:
    Sql(conn).run_all(TABLES)


@processor(PATTERN, name="messaging_delivery", setup=setup, requires_transaction=True)
def messaging_delivery(event: Event, ctx: Context) -> None:
    """Message deliveries sent / failed / recovered per channel."""
    sql = transaction_sql(ctx.transaction, "messaging_delivery")
    data = payload(event)
    _, channel, outcome = event.type.split(".")
    sql.execute(_INSERT, (
        event.id, channel, outcome, text(data, "customer", "id"),
        text(data, "distribution", "id"), text(data, f"{outcome}_at"), event.created_at))
