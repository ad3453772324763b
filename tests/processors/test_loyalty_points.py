"""The loyalty points read model: balance per card, history, pending points."""

from __future__ import annotations

from typing import Any

import pytest

from worker.errors import EventDecodeError

from .conftest import make_event

CUSTOMER = {"id": "cust_1", "object": "customer"}
CAMPAIGN = {"id": "camp_1", "name": "Loyalty programme"}
PREFIX = "customer.voucher.loyalty_card."


def card(card_id: str = "v_card1", code: str = "LC-1") -> dict[str, Any]:
    return {"id": card_id, "code": code, "type": "LOYALTY_CARD", "campaign_id": "camp_1"}


def points_event(kind: str, bal_points: int | None, balance: int | None, *, voucher: Any = None,
                 tx_type: str = "POINTS_ACCRUAL", at: str = "2024-03-01T00:00:00.000Z",
                 **extra: Any) -> Any:
    data: dict[str, Any] = {"customer": CUSTOMER, "campaign": CAMPAIGN,
                            "voucher": voucher or card(),
                            "transaction": {"id": "vtx_1", "type": tx_type}, **extra}
    if bal_points is not None or balance is not None:
        data["balance"] = {"type": "loyalty_card", "points": bal_points, "balance": balance}
    return make_event(PREFIX + kind, data, created_at=at)


def balances(query: Any) -> list[tuple[Any, ...]]:
    return query("SELECT card_id, balance, reported_balance FROM rm_points_cards "
                 "ORDER BY card_id")


def test_points_added_including_negative_deltas(run_with, query) -> None:
    run = run_with("loyalty_points")
    run(points_event("points_added", 100, 100, at="2024-03-01T00:00:00.000Z"))
    run(points_event("points_added", 50, 150, at="2024-03-02T00:00:00.000Z"))
    run(points_event("points_added", -30, 120, tx_type="POINTS_REMOVAL",
                     at="2024-03-03T00:00:00.000Z"))
    assert balances(query) == [("v_card1", 120, 120)]
    assert query("SELECT points, counted FROM rm_points_transactions ORDER BY created_at") == [
        (100, 1), (50, 1), (-30, 1)]


def test_out_of_order_arrival_gives_the_same_balance(run_with, query) -> None:
    run = run_with("loyalty_points")
    run(points_event("points_added", 50, 150, at="2024-03-02T00:00:00.000Z"))
    run(points_event("points_added", 100, 100, at="2024-03-01T00:00:00.000Z"))
    # The sum does not depend on order; the reported balance is the newest event's.
    assert balances(query) == [("v_card1", 150, 150)]


def test_transfer_out_and_in_are_signed_by_transaction_type(run_with, query) -> None:
    run = run_with("loyalty_points")
    src, dst = card("v_src", "SRC"), card("v_dst", "DST")
    run(points_event("points_added", 200, 200, voucher=src, at="2024-03-01T00:00:00.000Z"))
    run(points_event("points_transferred", 80, 120, voucher=src, tx_type="POINTS_TRANSFER_OUT",
                     source_voucher=src, destination_voucher=dst,
                     at="2024-03-02T00:00:00.000Z"))
    run(points_event("points_transferred", 80, 80, voucher=dst, tx_type="POINTS_TRANSFER_IN",
                     source_voucher=src, destination_voucher=dst,
                     at="2024-03-02T00:00:00.000Z"))
    assert balances(query) == [("v_dst", 80, 80), ("v_src", 120, 120)]
    assert query("SELECT card_id, points, related_card_id FROM rm_points_transactions "
                 "WHERE event_type LIKE '%transferred' ORDER BY card_id") == [
        ("v_dst", 80, "v_src"), ("v_src", -80, "v_dst")]


def test_expired_points_are_subtracted_whatever_their_sign(run_with, query) -> None:
    run = run_with("loyalty_points")
    run(points_event("points_added", 100, 100))
    run(points_event("points_expired", None, None, points=-20, tx_type="POINTS_EXPIRATION",
                     buckets=[{"id": "lopb_1", "bucket": {"total_points": 20}}]))
    run(points_event("points_expired", None, None, points=5, tx_type="POINTS_EXPIRATION"))
    assert balances(query) == [("v_card1", 75, 100)]


def test_pending_points_lifecycle(run_with, query) -> None:
    run = run_with("loyalty_points")

    def pending(kind: str, pid: str, pts: int, at: str, **kw: Any) -> Any:
        return points_event(f"pending_points.{kind}", kw.pop("bal_points", None),
                            kw.pop("bal", None), at=at,
                            pending_points={"id": pid, "points": pts}, **kw)

    run(pending("added", "lopp_1", 40, "2024-03-01T00:00:00.000Z"))
    run(pending("added", "lopp_2", 10, "2024-03-01T00:00:00.000Z"))
    run(pending("updated", "lopp_1", 45, "2024-03-02T00:00:00.000Z"))
    run(pending("canceled", "lopp_2", 10, "2024-03-03T00:00:00.000Z"))
    assert balances(query) == [("v_card1", 0, None)]
    assert query("SELECT pending_id, points, state FROM rm_pending_points "
                 "ORDER BY pending_id") == [("lopp_1", 45, "pending"),
                                            ("lopp_2", 10, "canceled")]
    run(pending("activated", "lopp_1", 45, "2024-03-04T00:00:00.000Z", bal_points=45, bal=45))
    assert balances(query) == [("v_card1", 45, 45)]
    assert query("SELECT state FROM rm_pending_points WHERE pending_id = 'lopp_1'") == [
        ("activated",)]


def test_rewarded_loyalty_points_is_history_only(run_with, query) -> None:
    """The same request's points_added carries those points; counting both would double."""
    run = run_with("loyalty_points")
    run(make_event("customer.rewarded.loyalty_points",
                   {"customer": CUSTOMER, "campaign": CAMPAIGN, "voucher": card(),
                    "balance": {"points": 25}}, group_id="v-same"))
    run(points_event("points_added", 25, 25))
    assert balances(query) == [("v_card1", 25, 25)]
    assert query("SELECT event_type, points, counted FROM rm_points_transactions "
                 "ORDER BY event_type") == [
        ("customer.rewarded.loyalty_points", 25, 0),
        ("customer.voucher.loyalty_card.points_added", 25, 1)]


def test_a_redelivered_event_is_not_counted_twice(run_with, query) -> None:
    run = run_with("loyalty_points")
    event = points_event("points_added", 100, 100)
    run(event)
    run(event)
    assert balances(query) == [("v_card1", 100, 100)]


def test_a_number_sent_as_a_string_is_a_schema_error_naming_its_path(run_with, query) -> None:
    """The typed model is strict on numbers: "70" for points is dead-lettered with its path
    (the pipeline turns EventDecodeError into a dead letter without retries)."""
    run = run_with("loyalty_points")
    voucher = {**card(), "loyalty_card": {"points": 300, "balance": 70}}
    data = {"customer": CUSTOMER, "voucher": voucher, "balance": {"points": "70"}}
    with pytest.raises(EventDecodeError, match=r"\$\.data\.balance\.points"):
        run(make_event(PREFIX + "points_added", data))
    assert balances(query) == []
