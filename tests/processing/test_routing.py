"""Table tests of the pattern semantics, the fan-out order, the cache and the typo warning."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from worker.errors import ConfigError
from worker.events import Event
from worker.events.types import KNOWN_TYPES
from worker.processing.planning import MAX_CACHED_TYPES, WorkPlanner
from worker.processing.routing import Router, compile_pattern
from worker.processors.api import Context, Processor


def _noop(event: Event, ctx: Context) -> None:
    return None


def proc(name: str, *patterns: str) -> Processor:
    return Processor(name=name, patterns=patterns, func=_noop)


MATCHES = [
    # (pattern, type, matches?)
    ("customer.loyalty.tier.upgraded", "customer.loyalty.tier.upgraded", True),
    ("customer.loyalty.tier.upgraded", "customer.loyalty.tier.downgraded", False),
    ("customer.loyalty.tier.*", "customer.loyalty.tier.upgraded", True),
    ("customer.loyalty.tier.*", "customer.loyalty.tier.expiration.changed", False),
    ("customer.loyalty.tier.*", "customer.loyalty.tier", False),
    ("customer.loyalty.tier.**", "customer.loyalty.tier.upgraded", True),
    ("customer.loyalty.tier.**", "customer.loyalty.tier.expiration.changed", True),
    ("customer.loyalty.tier.**", "customer.loyalty.tier", True),  # ** = zero or more
    ("customer.loyalty.tier.**", "customer.loyalty.updated", False),
    ("customer.{sms,email}.failed", "customer.sms.failed", True),
    ("customer.{sms,email}.failed", "customer.email.failed", True),
    ("customer.{sms,email}.failed", "customer.braze.failed", False),
    ("customer.{sms,email}.failed", "customer.sms.sent", False),
    ("customer.*.{sent,failed,recovered}", "customer.braze.recovered", True),
    ("customer.*.{sent,failed,recovered}", "customer.redemption.rollback.failed", False),
    ("customer.{sms,email}_{a,b}.x", "customer.email_b.x", True),
    ("customer.{sms,email}_{a,b}.x", "customer.email_c.x", False),
    ("**", "customer.created", True),
    ("**", "anything.at.all.here", True),
    ("*", "customer", True),
    ("*", "customer.created", False),
    ("*.*", "customer.created", True),
    ("customer.**.failed", "customer.failed", True),
    ("customer.**.failed", "customer.sms.failed", True),
    ("customer.**.failed", "customer.redemption.rollback.failed", True),
    ("customer.**.failed", "customer.redemption.rollback.succeeded", False),
    ("**.failed", "customer.sms.failed", True),
    ("**.failed", "failed", True),
    ("customer.**.**.failed", "customer.failed", True),
    ("customer.*.**", "customer", False),
    ("customer.*.**", "customer.created", True),
    ("customer.voucher.loyalty_card.**", "customer.voucher.loyalty_card.pending_points.added",
     True),
    ("customer.created", "customer.created.extra", False),
    ("customer.created", "customer", False),
    ("customer.created", "CUSTOMER.CREATED", False),
]


@pytest.mark.parametrize(("pattern", "type_", "expected"), MATCHES)
def test_pattern_semantics(pattern: str, type_: str, expected: bool) -> None:
    assert compile_pattern(pattern).matches(type_) is expected
    # The trie (Router) and the per-pattern matcher must agree.
    router = Router([proc("p", pattern)])
    assert (router.resolve(type_) != ()) is expected


INVALID = [
    ("", "non-empty"),
    ("customer..created", "empty segment"),
    (".customer", "empty segment"),
    ("customer.", "empty segment"),
    ("customer.***", "whole"),
    ("***", "whole"),
    ("customer.tier*", "whole"),
    ("customer.{sms,email.failed", "unbalanced"),
    ("customer.{sms,email}}.failed", "unbalanced"),
    ("customer.sms}.failed", "unbalanced"),
    ("customer.{sms,{email}}.failed", "nested"),
    ("customer.{sms.email}.failed", "inside braces"),
    ("customer.{}.failed", "non-empty literal"),
    ("customer.{sms,}.failed", "non-empty literal"),
    ("customer.{sms,*}.failed", "whole"),
    ("customer.a,b.failed", "brace group"),
    ("Customer.created", "not allowed"),
    ("customer.created!", "not allowed"),
    ("customer created", "not allowed"),
    ("customer.cré", "not allowed"),
]


@pytest.mark.parametrize(("pattern", "fragment"), INVALID)
def test_invalid_patterns_name_processor_and_pattern(pattern: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_pattern(pattern, "tier_sync")
    msg = str(info.value)
    assert "'tier_sync'" in msg
    assert repr(pattern) in msg
    assert fragment in msg


def test_router_refuses_an_invalid_pattern_at_startup() -> None:
    with pytest.raises(ConfigError, match=r"processor 'bad'.*'customer\.\*\*\*'"):
        Router([proc("good", "customer.created"), proc("bad", "customer.***")])


def test_router_refuses_duplicate_names() -> None:
    with pytest.raises(ConfigError, match="'dup'"):
        Router([proc("dup", "a"), proc("dup", "b")])


def test_router_refuses_a_processor_without_patterns() -> None:
    with pytest.raises(ConfigError, match="no pattern"):
        Router([proc("empty")])


def test_fan_out_is_registration_order_and_each_processor_once() -> None:
    z = proc("z_last_name", "customer.loyalty.tier.**")
    a = proc("a_first_name", "customer.loyalty.tier.upgraded", "customer.loyalty.**", "**")
    m = proc("m_other", "customer.loyalty.tier.*")
    n = proc("n_never", "customer.redemption.*")
    router = Router([z, a, n, m])
    assert router.resolve("customer.loyalty.tier.upgraded") == (z, a, m)
    # Order follows the given sequence, not names or pattern specificity.
    assert Router([m, a, z]).resolve("customer.loyalty.tier.upgraded") == (m, a, z)


def test_unmatched_type_resolves_to_empty_tuple() -> None:
    router = Router([proc("p", "customer.loyalty.tier.*")])
    assert router.resolve("customer.consents.given") == ()
    assert router.resolve("") == ()


def test_routes_are_kept_per_type_by_the_planner() -> None:
    """The one route cache is the planner's: each type is resolved by the router once."""
    asked: list[str] = []

    class Counting(Router):
        def resolve(self, type_: str) -> tuple[Processor, ...]:
            asked.append(type_)
            return super().resolve(type_)

    p = proc("p", "customer.**")
    planner = WorkPlanner({"p": 0}, Counting([p]), "skip")
    first = planner._routes("customer.created")
    assert planner._routes("customer.created") == first
    assert first[0][0] is p
    assert asked == ["customer.created"]
    assert planner._route_cache == {"customer.created": first}


def test_route_cache_is_bounded_for_junk_types() -> None:
    planner = WorkPlanner({"p": 0}, Router([proc("p", "**")]), "skip")
    for i in range(MAX_CACHED_TYPES + 50):
        assert planner._routes(f"junk.t{i}") != ()
    assert len(planner._route_cache) == MAX_CACHED_TYPES


def test_unused_patterns_reports_probable_typos() -> None:
    typo = proc("typo", "customer.loyalty.teir.*", "customer.loyalty.tier.*")
    fine = proc("fine", "customer.{sms,email}.sent")
    router = Router([typo, fine])
    assert router.unused_patterns() == [(typo, "customer.loyalty.teir.*")]


def test_unused_patterns_are_logged_as_a_warning_at_construction() -> None:
    with capture_logs() as logs:
        Router([proc("typo", "customer.loyalty.teir.*"), proc("ok", "customer.created")])
    assert logs == [{"event": "pattern matches no known event type (a typo?)",
                     "log_level": "warning", "processor": "typo",
                     "pattern": "customer.loyalty.teir.*", "module": "", "known_types": 74}]
    with capture_logs() as logs:
        Router([proc("typo", "customer.loyalty.teir.*")], warn_unused=False)
    assert logs == []


def test_matching_types_lists_known_types_in_seed_order() -> None:
    router = Router([])
    assert router.matching_types("customer.loyalty.tier.*") == [
        "customer.loyalty.tier.upgraded", "customer.loyalty.tier.downgraded",
        "customer.loyalty.tier.prolonged", "customer.loyalty.tier.joined",
        "customer.loyalty.tier.left"]
    assert len(router.matching_types("customer.**")) == 74


def test_known_types_are_the_74_seed_values() -> None:
    assert len(KNOWN_TYPES) == 74
    assert len(set(KNOWN_TYPES)) == 74
    assert all(2 <= len(t.split(".")) <= 5 for t in KNOWN_TYPES)
