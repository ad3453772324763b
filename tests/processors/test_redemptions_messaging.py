"""The redemptions and message-delivery read models."""

from __future__ import annotations

from typing import Any

from worker.events.types import KNOWN_TYPES
from worker.processing.routing import Router

from .conftest import builtin, make_event

CUSTOMER = {"id": "cust_1"}


def redemption(kind: str, campaign: Any, code: str | None = None, **extra: Any) -> Any:
    red = {"id": "r_1", "amount": 1000, "result": "FAILURE" if code else "SUCCESS",
           "failure_code": code}
    return make_event(f"customer.redemption.{kind}",
                      {"customer": CUSTOMER, "campaign": campaign, "redemption": red,
                       "voucher": {"code": "SUMMER"}, **extra})


def test_redemptions_per_campaign_with_failure_codes(run_with, query) -> None:
    run = run_with("redemptions")
    c1 = {"id": "camp_1", "name": "Summer"}
    run(redemption("succeeded", c1))
    run(redemption("succeeded", c1))
    run(redemption("failed", c1, "voucher_expired"))
    run(redemption("failed", c1, "quantity_exceeded"))
    run(redemption("failed", None, None))  # no campaign, no code
    run(redemption("rollback.succeeded", c1, redemption_rollback={"id": "rr_1"}))
    run(redemption("rollback.failed", c1,
                   redemption_rollback={"id": "rr_2", "failure_code": "already_rolled_back"}))
    assert query("SELECT campaign_id, outcome, COUNT(*) FROM rm_redemptions "
                 "GROUP BY campaign_id, outcome ORDER BY campaign_id, outcome") == [
        ("", "failed", 1),
        ("camp_1", "failed", 2), ("camp_1", "rollback_failed", 1),
        ("camp_1", "rolled_back", 1), ("camp_1", "succeeded", 2)]
    assert query("SELECT failure_code FROM rm_redemptions WHERE failure_code IS NOT NULL "
                 "ORDER BY failure_code") == [
        ("already_rolled_back",), ("quantity_exceeded",), ("unknown",), ("voucher_expired",)]


def test_deliveries_per_channel(run_with, query) -> None:
    run = run_with("messaging_delivery")
    for type_, at in [("customer.email.sent", "sent_at"), ("customer.email.sent", "sent_at"),
                      ("customer.email.failed", "failed_at"),
                      ("customer.email.recovered", "recovered_at"),
                      ("customer.sms.failed", "failed_at"), ("customer.braze.sent", "sent_at")]:
        run(make_event(type_, {"customer": CUSTOMER, "distribution": {"id": "distr_1"},
                               at: "2024-03-01T00:00:00.000Z"}))
    assert query("SELECT channel, outcome, COUNT(*) FROM rm_message_deliveries "
                 "GROUP BY channel, outcome ORDER BY channel, outcome") == [
        ("braze", "sent", 1), ("email", "failed", 1), ("email", "recovered", 1),
        ("email", "sent", 2), ("sms", "failed", 1)]
    assert query("SELECT DISTINCT occurred_at FROM rm_message_deliveries") == [
        ("2024-03-01T00:00:00.000Z",)]


def test_builtin_patterns_cover_exactly_their_families() -> None:
    procs = [builtin(n) for n in ("loyalty_tiers", "loyalty_points", "redemptions",
                                  "messaging_delivery")]
    router = Router(procs)
    assert router.unused_patterns() == []
    routed = {t: [p.name for p in router.resolve(t)] for t in KNOWN_TYPES}
    assert routed["customer.redemption.failed"] == ["redemptions"]
    assert routed["customer.publication.failed"] == []
    assert routed["customer.validation.failed"] == []
    assert routed["customer.klaviyo.recovered"] == ["messaging_delivery"]
    assert routed["customer.loyalty.tier.expiration.changed"] == ["loyalty_tiers"]
    assert routed["customer.loyalty.updated"] == []
    assert routed["customer.rewarded.loyalty_points"] == ["loyalty_points"]
    assert routed["customer.rewarded"] == []
    assert sum(1 for names in routed.values() if "messaging_delivery" in names) == 27
    assert sum(1 for names in routed.values() if "loyalty_points" in names) == 9
    assert sum(1 for names in routed.values() if "redemptions" in names) == 4
    assert sum(1 for names in routed.values() if "loyalty_tiers" in names) == 6
    assert all(len(names) <= 1 for names in routed.values())
