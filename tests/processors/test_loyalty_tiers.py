"""The loyalty tiers read model: current tier per customer/campaign and tier history."""

from __future__ import annotations

from typing import Any

import pytest

from worker.errors import FatalProcessingError, NonRetriableError
from worker.processors.api import Context

from .conftest import builtin, make_event

CUSTOMER = {"id": "cust_1", "name": "Alex Doe", "object": "customer"}
CAMPAIGN = {"id": "camp_1", "name": "Loyalty programme", "object": "campaign"}
SILVER = {"id": "ltr_silver", "name": "Loyal silver", "points": {"from": 151, "to": 250}}
GOLD = {"id": "ltr_gold", "name": "Loyal gold", "points": {"from": 251, "to": 350}}


def change(kind: str, frm: Any, to: Any, at: str, customer: Any = CUSTOMER, **kw: Any) -> Any:
    return make_event(f"customer.loyalty.tier.{kind}",
                      {"customer": customer, "campaign": CAMPAIGN, "loyalty_tier_from": frm,
                       "loyalty_tier_to": to, "created_at": at}, created_at=at, **kw)


def single(kind: str, tier: Any, at: str, **extra: Any) -> Any:
    return make_event(f"customer.loyalty.tier.{kind}",
                      {"customer": CUSTOMER, "campaign": CAMPAIGN, "loyalty_tier": tier,
                       **extra}, created_at=at)


def test_upgrade_then_downgrade_moves_current_tier_and_keeps_history(run_with, query) -> None:
    run = run_with("loyalty_tiers")
    run(single("joined", SILVER, "2024-03-01T00:00:00.000Z"))
    run(change("upgraded", SILVER, GOLD, "2024-03-02T00:00:00.000Z"))
    assert query("SELECT tier_id, tier_name, last_event_type FROM rm_loyalty_tier_current") == [
        ("ltr_gold", "Loyal gold", "customer.loyalty.tier.upgraded")]
    run(change("downgraded", GOLD, SILVER, "2024-03-03T00:00:00.000Z"))
    assert query("SELECT tier_id FROM rm_loyalty_tier_current") == [("ltr_silver",)]
    assert query("SELECT event_type, from_tier_id, to_tier_id FROM rm_loyalty_tier_history "
                 "ORDER BY created_at") == [
        ("customer.loyalty.tier.joined", None, "ltr_silver"),
        ("customer.loyalty.tier.upgraded", "ltr_silver", "ltr_gold"),
        ("customer.loyalty.tier.downgraded", "ltr_gold", "ltr_silver")]


def test_an_older_event_arriving_late_does_not_override_the_current_tier(run_with,
                                                                         query) -> None:
    run = run_with("loyalty_tiers")
    run(change("upgraded", SILVER, GOLD, "2024-03-05T00:00:00.000Z"))
    run(change("upgraded", None, SILVER, "2024-03-01T00:00:00.000Z"))  # late webhook retry
    assert query("SELECT tier_id FROM rm_loyalty_tier_current") == [("ltr_gold",)]
    assert query("SELECT COUNT(*) FROM rm_loyalty_tier_history") == [(2,)]


def test_left_clears_the_tier_and_expiration_changed_is_recorded(run_with, query) -> None:
    run = run_with("loyalty_tiers")
    run(single("joined", GOLD, "2024-03-01T00:00:00.000Z"))
    run(single("expiration.changed", GOLD, "2024-03-02T00:00:00.000Z",
               expiration_date="2025-01-01"))
    assert query("SELECT expiration_date FROM rm_loyalty_tier_history "
                 "WHERE event_type = 'customer.loyalty.tier.expiration.changed'") == [
        ("2025-01-01",)]
    run(single("left", GOLD, "2024-03-03T00:00:00.000Z"))
    assert query("SELECT tier_id, last_event_type FROM rm_loyalty_tier_current") == [
        (None, "customer.loyalty.tier.left")]


def test_tiers_are_per_customer_and_campaign(run_with, query) -> None:
    run = run_with("loyalty_tiers")
    run(change("upgraded", SILVER, GOLD, "2024-03-02T00:00:00.000Z"))
    run(change("upgraded", None, SILVER, "2024-03-02T00:00:00.000Z",
               customer={"id": "cust_2"}))
    assert query("SELECT customer_id, tier_id FROM rm_loyalty_tier_current "
                 "ORDER BY customer_id") == [("cust_1", "ltr_gold"), ("cust_2", "ltr_silver")]


def test_the_same_event_twice_writes_one_history_row(run_with, query) -> None:
    run = run_with("loyalty_tiers")
    event = change("upgraded", SILVER, GOLD, "2024-03-02T00:00:00.000Z", event_id="evcus_same")
    run(event)
    run(event)
    assert query("SELECT COUNT(*) FROM rm_loyalty_tier_history") == [(1,)]


def test_unknown_tier_subtype_is_history_only(run_with, query) -> None:
    run = run_with("loyalty_tiers")
    run(single("frozen", GOLD, "2024-03-02T00:00:00.000Z"))
    assert query("SELECT event_type, to_tier_id FROM rm_loyalty_tier_history") == [
        ("customer.loyalty.tier.frozen", "ltr_gold")]
    assert query("SELECT COUNT(*) FROM rm_loyalty_tier_current") == [(0,)]


def test_the_wrapped_data_shape_of_the_spec_is_accepted(run_with, query) -> None:
    run = run_with("loyalty_tiers")
    inner = {"customer": CUSTOMER, "campaign": CAMPAIGN, "loyalty_tier_from": SILVER,
             "loyalty_tier_to": GOLD}
    run(make_event("customer.loyalty.tier.upgraded",
                   {"data": inner, "event_source": {"channel": "API"}}))
    assert query("SELECT customer_id, tier_id FROM rm_loyalty_tier_current") == [
        ("cust_1", "ltr_gold")]


def test_missing_customer_is_dead_lettered_with_its_path(run_with) -> None:
    run = run_with("loyalty_tiers")
    with pytest.raises(NonRetriableError, match=r"\$\.data\.customer\.id"):
        run(make_event("customer.loyalty.tier.joined", {"loyalty_tier": GOLD}))


def test_without_a_sql_ledger_the_worker_stops_with_a_clear_error() -> None:
    proc = builtin("loyalty_tiers")
    event = single("joined", GOLD, "2024-03-01T00:00:00.000Z")
    with pytest.raises(FatalProcessingError, match="needs a SQL ledger"):
        proc.func(event, Context(proc, event, "t", 0, 0, None))
