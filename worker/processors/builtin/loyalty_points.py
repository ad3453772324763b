"""Built-in processor: loyalty points balance and transaction history per card and customer.

From `customer.voucher.loyalty_card.**` and `customer.rewarded.loyalty_points`. Every event is
one row of `rm_points_transactions` (keyed by event id) with its signed `points` delta and
whether the delta counts in the card's balance:

- points_added / points_activated: `balance.points` as given (negative deltas are kept);
- points_transferred: `balance.points`, made negative for a POINTS_TRANSFER_OUT transaction and
  positive for POINTS_TRANSFER_IN; the other card is kept in `related_card_id`;
- points_expired: minus the expired points, whatever sign the event uses;
- pending_points.added / updated / canceled: tracked in `rm_pending_points`, not in the balance;
- pending_points.activated: the activated points count in the balance, the pending row closes;
- customer.rewarded.loyalty_points: recorded (counted = 0) but NOT added to the balance: the
  same request also emits `...loyalty_card.points_added` for those points (same group_id, see
  domain.md), and counting both would double them.

`rm_points_cards.balance` is the sum of the counted deltas (order-independent), and
`reported_balance` is the balance the newest event stated, so the two can be compared.
"""

from __future__ import annotations

from typing import Any

from worker.events import Event
from worker.processors.api import Context, processor
from worker.processors.data import get, integer, payload, text
from worker.processors.sql import Sql, transaction_sql

TABLES = (
    """CREATE TABLE IF NOT EXISTS rm_points_transactions (
        event_id TEXT PRIMARY KEY,
        card_id TEXT,
        card_code TEXT,
        customer_id TEXT,
        campaign_id TEXT,
        event_type TEXT NOT NULL,
        transaction_id TEXT,
        transaction_type TEXT,
        points BIGINT NOT NULL,
        counted INTEGER NOT NULL,
        balance_after BIGINT,
        related_card_id TEXT,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rm_points_cards (
        card_id TEXT PRIMARY KEY,
        card_code TEXT,
        customer_id TEXT,
        campaign_id TEXT,
        balance BIGINT NOT NULL,
        reported_balance BIGINT,
        reported_at TEXT,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rm_pending_points (
        pending_id TEXT PRIMARY KEY,
        card_id TEXT,
        customer_id TEXT,
        points BIGINT NOT NULL,
        state TEXT NOT NULL,
        changed_at TEXT NOT NULL)""",
)

_INSERT_TX = """INSERT INTO rm_points_transactions (event_id, card_id, card_code, customer_id,
    campaign_id, event_type, transaction_id, transaction_type, points, counted, balance_after,
    related_card_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (event_id) DO NOTHING"""

_UPSERT_CARD = """INSERT INTO rm_points_cards (card_id, card_code, customer_id, campaign_id,
    balance, reported_balance, reported_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (card_id) DO UPDATE SET
        card_code = COALESCE(excluded.card_code, rm_points_cards.card_code),
        customer_id = COALESCE(excluded.customer_id, rm_points_cards.customer_id),
        campaign_id = COALESCE(excluded.campaign_id, rm_points_cards.campaign_id),
        balance = rm_points_cards.balance + excluded.balance,
        reported_balance = CASE WHEN excluded.reported_at IS NOT NULL AND (
                rm_points_cards.reported_at IS NULL
                OR excluded.reported_at >= rm_points_cards.reported_at)
            THEN excluded.reported_balance ELSE rm_points_cards.reported_balance END,
        reported_at = CASE WHEN excluded.reported_at IS NOT NULL AND (
                rm_points_cards.reported_at IS NULL
                OR excluded.reported_at >= rm_points_cards.reported_at)
            THEN excluded.reported_at ELSE rm_points_cards.reported_at END,
        updated_at = excluded.updated_at"""

_UPSERT_PENDING = """INSERT INTO rm_pending_points (pending_id, card_id, customer_id, points,
    state, changed_at) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (pending_id) DO UPDATE SET
        card_id = COALESCE(excluded.card_id, rm_pending_points.card_id),
        points = excluded.points, state = excluded.state, changed_at = excluded.changed_at
    WHERE excluded.changed_at >= rm_pending_points.changed_at"""

_PENDING_STATE = {"added": "pending", "updated": "pending", "canceled": "canceled",
                  "activated": "activated"}


def setup(conn: Any) -> None:
    Sql(conn).run_all(TABLES)


def _delta(event_type: str, data: Any) -> tuple[int, bool]:
    """(signed points, counts in the balance?) for one event."""
    points = integer(data, "balance", "points")
    if points is None:
        points = integer(data, "transaction", "details", "balance", "points")
    tx_type = (text(data, "transaction", "type") or "").upper()
    if event_type == "customer.rewarded.loyalty_points":
        return (points or 0), False
    suffix = event_type.removeprefix("customer.voucher.loyalty_card.")
    if suffix == "points_expired":
        expired = integer(data, "points")
        return -abs(expired if expired is not None else (points or 0)), True
    if suffix == "points_transferred":
        magnitude = abs(points or 0)
        return (-magnitude if tx_type.endswith("_OUT") else magnitude
                if tx_type.endswith("_IN") else (points or 0)), True
    if suffix == "pending_points.activated":
        if points is None:
            points = integer(data, "pending_points", "points")
        return (points or 0), True
    if suffix.startswith("pending_points."):
        return (integer(data, "pending_points", "points") or 0), False
    if points is None:
        return 0, False
    return points, True


@processor("customer.voucher.loyalty_card.**", "customer.rewarded.loyalty_points",
           name="loyalty_points", setup=setup, requires_transaction=True)
def loyalty_points(event: Event, ctx: Context) -> None:
    """Points balance and transaction history per loyalty card and customer."""
    sql = transaction_sql(ctx.transaction, "loyalty_points")
    data = payload(event)
    voucher = get(data, "voucher")
    card_id = text(voucher, "id")
    card_code = text(voucher, "code")
    customer_id = text(data, "customer", "id") or text(voucher, "holder_id")
    campaign_id = text(data, "campaign", "id") or text(voucher, "campaign_id")
    points, counted = _delta(event.type, data)
    balance_after = integer(data, "balance", "balance")
    if balance_after is None:
        balance_after = integer(voucher, "loyalty_card", "balance")
    related = None
    if event.type.endswith(".points_transferred"):
        for key in ("source_voucher", "destination_voucher"):
            other = text(data, key, "id")
            if other and other != card_id:
                related = other
    if counted and card_id is None:
        counted = False  # a balance needs a card; keep the row as history only
    inserted = sql.rowcount(_INSERT_TX, (
        event.id, card_id, card_code, customer_id, campaign_id, event.type,
        text(data, "transaction", "id"), text(data, "transaction", "type"), points,
        1 if counted else 0, balance_after, related, event.created_at))
    if not inserted:
        return  # this event is already in the history (the ledger lost its mark)
    if card_id is not None and event.type != "customer.rewarded.loyalty_points":
        sql.execute(_UPSERT_CARD, (
            card_id, card_code, customer_id, campaign_id, points if counted else 0,
            balance_after, event.created_at if balance_after is not None else None,
            event.created_at))
    suffix = event.type.removeprefix("customer.voucher.loyalty_card.pending_points.")
    pending_id = text(data, "pending_points", "id")
    if suffix in _PENDING_STATE and pending_id:
        sql.execute(_UPSERT_PENDING, (
            pending_id, card_id, customer_id, integer(data, "pending_points", "points") or 0,
            _PENDING_STATE[suffix], event.created_at))
