"""Property: the points balance depends only on the set of events, not on their order or on
redeliveries (in-memory SQLite, so hypothesis can run many examples)."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.processors.api import Context

from .conftest import builtin, make_event

CARDS = ["v_a", "v_b"]

step = st.tuples(
    st.sampled_from(["points_added", "points_expired", "transfer_out", "transfer_in",
                     "pending_points.added", "rewarded"]),
    st.sampled_from(CARDS),
    st.integers(min_value=-500, max_value=500),
)


def to_event(index: int, kind: str, card: str, points: int) -> tuple[Any, int]:
    """(event, expected balance delta for its card)."""
    base = {"customer": {"id": "c"}, "voucher": {"id": card}}
    created = f"2024-03-01T00:00:{index % 60:02d}.{index:03d}Z"
    eid = f"evcus_{index:06d}"
    if kind == "points_added":
        data = {**base, "balance": {"points": points}}
        return make_event("customer.voucher.loyalty_card.points_added", data, event_id=eid,
                          created_at=created), points
    if kind == "points_expired":
        return make_event("customer.voucher.loyalty_card.points_expired",
                          {**base, "points": points}, event_id=eid,
                          created_at=created), -abs(points)
    if kind in ("transfer_out", "transfer_in"):
        tx = "POINTS_TRANSFER_OUT" if kind == "transfer_out" else "POINTS_TRANSFER_IN"
        data = {**base, "balance": {"points": points}, "transaction": {"type": tx}}
        sign = -1 if kind == "transfer_out" else 1
        return make_event("customer.voucher.loyalty_card.points_transferred", data,
                          event_id=eid, created_at=created), sign * abs(points)
    if kind == "pending_points.added":
        data = {**base, "pending_points": {"id": f"lopp_{index}", "points": abs(points)}}
        return make_event("customer.voucher.loyalty_card.pending_points.added", data,
                          event_id=eid, created_at=created), 0
    return make_event("customer.rewarded.loyalty_points", {**base, "balance": {"points": points}},
                      event_id=eid, created_at=created), 0


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=12), data=st.data())
def test_balance_is_the_sum_of_deltas_in_any_order(steps: list[Any], data: Any) -> None:
    proc = builtin("loyalty_points")
    assert proc.setup is not None
    events = [to_event(i, *s) for i, s in enumerate(steps)]
    expected = {c: 0 for c in CARDS}
    for event, delta in events:
        expected[msgspec.json.decode(event.raw_data)["voucher"]["id"]] += delta
    # Any order, with some events delivered twice.
    order = data.draw(st.permutations(events))
    replays = data.draw(st.lists(st.sampled_from(events), max_size=4))
    conn = sqlite3.connect(":memory:")
    proc.setup(conn)
    for event, _ in [*order, *replays]:
        proc.func(event, Context(proc, event, "t", 0, 0, conn))
    got = dict(conn.execute("SELECT card_id, balance FROM rm_points_cards").fetchall())
    assert {c: got.get(c, 0) for c in CARDS} == expected
    assert conn.execute("SELECT COUNT(*) FROM rm_points_transactions").fetchone() == (
        len(events),)
