"""The known-type list matches the seed's TypeEnum (copied to data/seed_types.txt)."""

from __future__ import annotations

from pathlib import Path

from worker.events import KNOWN_TYPES, EventType, family_of
from worker.events.types import FAMILIES

SEED = Path(__file__).parent / "data" / "seed_types.txt"


def test_known_types_are_exactly_the_seed_enum() -> None:
    seed = [line.strip() for line in SEED.read_text().splitlines() if line.strip()]
    assert len(seed) == 74
    assert frozenset(seed) == set(KNOWN_TYPES)
    assert [t.value for t in EventType] == seed  # same order as the seed


def test_every_known_type_has_a_family_and_unknown_has_none() -> None:
    assert set(FAMILIES) == set(KNOWN_TYPES)
    assert family_of("customer.order.paid") == "order"
    assert family_of("customer.klaviyo.failed") == "messaging"
    assert family_of("customer.loyalty.tier.upgraded") == "loyalty_tier"
    assert family_of("customer.consents.given") is None


def test_event_type_is_a_str() -> None:
    assert EventType.ORDER_PAID == "customer.order.paid"
    assert "customer.order.paid" in KNOWN_TYPES
