"""Realistic CustomerActivity events for demos, benchmarks and tests.

Deterministic for a given seed. What makes it realistic:
- ids carry Voucherify's prefixes (`evcus_`, `v-`, `cust_`, `camp_`, `v_`, `ltr_`, `vtx_`, ...);
- a fixed pool of customers recurs (a few are much more active than the rest), and the Kafka key
  is the customer id, so one customer's events stay in one partition;
- one request causes several events sharing a `group_id` the way Voucherify does (an order paid
  causes customer.order.paid, customer.rewarded.loyalty_points, ...points_added and sometimes
  customer.loyalty.tier.upgraded);
- every one of the 74 known types occurs, with the `data` shape of its family.

A share of *duplicates* (byte-identical redeliveries of a recent event, as Kafka and webhook
retries produce) and of *bad* events (one of the failure classes of `decode_event`, or data of
the wrong shape) can be mixed in; each record says which it is.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from worker.events.types import MESSAGING_CHANNELS, EventType

T = EventType
_encode = msgspec.json.Encoder().encode
_FIRST = ("Alex", "Sam", "Maria", "John", "Anna", "Piotr", "Kate", "Omar", "Lena", "Yuki", "Zoe")
_LAST = ("Doe", "Smith", "Nowak", "Garcia", "Kim", "Muller", "Rossi", "Silva", "Khan", "Berg")
_CITIES = (("Warsaw", "PL"), ("Berlin", "DE"), ("Austin", "US"), ("Lyon", "FR"), ("Kyoto", "JP"))

#: Kinds of bad event the generator can emit (see BAD_KINDS_EXPECTED for the expected outcome).
BAD_KINDS: tuple[str, ...] = (
    "invalid_utf8",
    "truncated_json",
    "not_an_object",
    "missing_id",
    "numeric_group_id",
    "malformed_created_at",
    "wrong_type_in_data",
)
#: bad kind -> (error class, where the error is raised: "envelope" or "data").
BAD_KINDS_EXPECTED: dict[str, tuple[str, str]] = {
    "invalid_utf8": ("undecodable", "data"),  # inside data.customer.name
    "truncated_json": ("invalid_json", "envelope"),
    "not_an_object": ("not_an_object", "envelope"),
    "missing_id": ("schema", "envelope"),
    "numeric_group_id": ("schema", "envelope"),
    "malformed_created_at": ("schema", "envelope"),
    "wrong_type_in_data": ("schema", "data"),
}


class Record(NamedTuple):
    """One generated line. kind: "ok", "duplicate" (a redelivery of an earlier ok record) or
    "bad:<kind>" (see BAD_KINDS)."""

    key: bytes
    value: bytes
    kind: str
    type: str


@dataclass
class Counts:
    """What a generator has emitted so far."""

    total: int = 0
    ok: int = 0
    duplicates: int = 0
    bad: int = 0
    webhooks: int = 0  # ok records and duplicates sent as webhook deliveries
    by_type: Counter[str] = field(default_factory=Counter)  # ok records only
    by_bad_kind: Counter[str] = field(default_factory=Counter)


def _ident(rng: random.Random, n: int) -> str:
    """n lowercase hex chars: Voucherify ids are alphanumeric, hex is a fast subset of that."""
    return f"{rng.getrandbits(4 * n):0{n}x}"


class EventGenerator:
    """Makes realistic events. `records(count)` yields `Record`s; `counts` tallies them."""

    def __init__(
        self,
        seed: int = 0,
        duplicate_share: float = 0.0,
        bad_share: float = 0.0,
        customers: int = 500,
        start: datetime | None = None,
        webhook_share: float = 0.0,
    ) -> None:
        if not 0.0 <= duplicate_share < 1.0 or not 0.0 <= bad_share < 1.0:
            raise ValueError("duplicate_share and bad_share must be in [0, 1)")
        if not 0.0 <= webhook_share <= 1.0:
            raise ValueError("webhook_share must be in [0, 1]")
        if duplicate_share + bad_share >= 1.0:
            raise ValueError("duplicate_share + bad_share must be below 1")
        self.rng = random.Random(seed)
        self._random = self.rng.random
        self._card_ids: dict[str, tuple[str, str]] = {}
        self.duplicate_share = duplicate_share
        self.bad_share = bad_share
        self.webhook_share = webhook_share
        self.counts = Counts()
        begin = start or datetime(2024, 3, 11, 12, 0, 0, tzinfo=UTC)
        self._ms = int(begin.timestamp() * 1000)
        self._sec = -1
        self._sec_text = ""
        self._recent: list[Record] = []
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._group_id = ""
        self._customers = [self._make_customer(i) for i in range(customers)]
        # Activity is skewed: a tenth of the customers cause about half of the events.
        weights = [10.0 if i % 10 == 0 else 1.0 for i in range(customers)]
        self._cum_weights = list(itertools.accumulate(weights))
        self._shorts = {c["id"]: self._trim_customer(c) for c in self._customers}
        self._campaigns = {
            "LOYALTY_PROGRAM": self._make_campaign("Loyalty programme", "LOYALTY_PROGRAM"),
            "GIFT_VOUCHERS": self._make_campaign("Gift cards", "GIFT_VOUCHERS"),
            "DISCOUNT_COUPONS": self._make_campaign("Spring sale -20%", "DISCOUNT_COUPONS"),
            "REFERRAL_PROGRAM": self._make_campaign("Refer a friend", "REFERRAL_PROGRAM"),
        }
        self._tiers = [
            self._make_tier("Loyal bronze", 0, 150),
            self._make_tier("Loyal silver", 151, 250),
            self._make_tier("Loyal gold", 251, 350),
        ]
        self._scenarios: list[Callable[[dict[str, Any]], None]] = [
            self._order_paid_scenario,
            self._redemption_scenario,
            *[self._single(t) for t in EventType],
        ]

    # --- public API ---

    def records(self, count: int) -> Iterator[Record]:
        """Yield `count` records (ok, duplicates and bad ones mixed by their shares)."""
        rng = self.rng
        counts = self.counts
        dup, bad = self.duplicate_share, self.duplicate_share + self.bad_share
        for _ in range(count):
            roll = rng.random()
            if roll < dup and self._recent:
                original = self._recent[self._rand(len(self._recent))]
                rec = Record(original.key, original.value, "duplicate", original.type)
                counts.duplicates += 1
            elif dup <= roll < bad:
                rec = self._bad()
                counts.bad += 1
                counts.by_bad_kind[rec.kind[4:]] += 1
            else:
                rec = self._next_ok()
                counts.ok += 1
                counts.by_type[rec.type] += 1
                if len(self._recent) < 1000:
                    self._recent.append(rec)
                else:
                    self._recent[self._rand(1000)] = rec
            if self.webhook_share and not rec.kind.startswith("bad") and (
                    rng.random() < self.webhook_share):
                rec = Record(rec.key, self._webhook(rec.value), rec.kind, rec.type)
                counts.webhooks += 1
            counts.total += 1
            yield rec

    def _webhook(self, value: bytes) -> bytes:
        """The event as a webhook delivery carries it: `{"id": "whs_…", "type", "data",
        "event": {id, type, created_at, entity_id, group_id, event_source}}`."""
        event = msgspec.json.decode(value)
        data = event.get("data") or {}
        customer = data.get("customer") if isinstance(data, dict) else None
        return _encode({
            "id": f"whs_{self._hex()}",
            "type": event["type"],
            "data": data,
            "event": {
                "id": event["id"], "type": event["type"], "created_at": event["created_at"],
                "entity_id": customer.get("id") if isinstance(customer, dict) else None,
                "group_id": event["group_id"],
                "event_source": {"channel": "API", "api_key": {"name": "backend",
                                                               "app_id": "a-8f2e1c"}},
            },
            "created_at": event["created_at"],
            "object": "webhook_sending",
        })

    def one(self, type_: str) -> bytes:
        """One valid event of the given known type (its own request)."""
        customer = self._pick_customer()
        self._group_id = self._gid()
        self._single(EventType(type_))(customer)
        t, data = self._pending.pop(0)
        self._pending.clear()
        return self._envelope(t, data)

    # --- ids and time ---

    def _rand(self, lo: int, hi: int | None = None) -> int:
        """Like randrange(lo, hi) for small ranges, several times faster."""
        if hi is None:
            lo, hi = 0, lo
        return lo + int(self._random() * (hi - lo))

    def _hex(self) -> str:
        return f"{self.rng.getrandbits(72):018x}"

    def _gid(self) -> str:
        return f"v-{self._hex()}"

    def _ts(self) -> str:
        """Advance the clock by 1-400 ms and return the new time (ISO 8601, ms, Z)."""
        self._ms += self._rand(1, 400)
        return self._ts_peek()

    def _ts_peek(self) -> str:
        sec, ms = divmod(self._ms, 1000)
        if sec != self._sec:
            self._sec = sec
            self._sec_text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._sec_text}{ms:03d}Z"

    def _envelope(self, type_: str, data: dict[str, Any]) -> bytes:
        return _encode(
            {
                "id": f"evcus_{self._hex()}",
                "type": type_,
                "data": data,
                "created_at": self._ts(),
                "group_id": self._group_id,
            }
        )

    def _next_ok(self) -> Record:
        while not self._pending:
            customer = self._pick_customer()
            self._group_id = self._gid()
            self.rng.choice(self._scenarios)(customer)
            self._current_key = customer["id"].encode()
        type_, data = self._pending.pop(0)
        return Record(self._current_key, self._envelope(type_, data), "ok", type_)

    # --- pools ---

    def _make_customer(self, i: int) -> dict[str, Any]:
        rng = self.rng
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, country = rng.choice(_CITIES)
        return {
            "id": f"cust_{_ident(rng, 24)}",
            "source_id": f"{first.lower()}-{last.lower()}-{i}",
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{i}@example.com",
            "phone": f"+48{self._rand(500000000, 899999999)}",
            "address": {
                "city": city,
                "country": country,
                "postal_code": f"{self._rand(10000, 99999)}",
            },
            "metadata": {
                "tier_hint": rng.choice(["new", "regular", "vip"]),
                "newsletter": rng.random() < 0.5,
            },
            "summary": {
                "redemptions": {"total_redeemed": self._rand(0, 40)},
                "orders": {"total_amount": self._rand(0, 500000)},
            },
            "created_at": "2023-11-02T09:14:21.337Z",
            "object": "customer",
        }

    def _make_campaign(self, name: str, kind: str) -> dict[str, Any]:
        return {
            "id": f"camp_{_ident(self.rng, 24)}",
            "name": name,
            "campaign_type": kind,
            "type": "AUTO_UPDATE",
            "object": "campaign",
        }

    def _make_tier(self, name: str, lo: int, hi: int) -> dict[str, Any]:
        return {
            "id": f"ltr_{self._hex()}",
            "name": name,
            "campaign_id": self._campaigns["LOYALTY_PROGRAM"]["id"],
            "points": {"from": lo, "to": hi},
            "object": "loyalty_tier",
        }

    def _pick_customer(self) -> dict[str, Any]:
        return self.rng.choices(self._customers, cum_weights=self._cum_weights)[0]

    # --- sub-objects ---

    @staticmethod
    def _trim_customer(c: dict[str, Any]) -> dict[str, Any]:
        return {k: c[k] for k in ("id", "source_id", "name", "email", "metadata", "object")}

    def _short_customer(self, c: dict[str, Any]) -> dict[str, Any]:
        """The trimmed customer most events carry (shared, never mutated)."""
        short: dict[str, Any] = self._shorts[c["id"]]
        return short

    def _loyalty_card(
        self, camp: dict[str, Any], customer: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A loyalty card; a customer's own card keeps its id and code across events."""
        pts = self._rand(0, 400)
        if customer is None:
            ident, code = _ident(self.rng, 24), _ident(self.rng, 8).upper()
        else:
            ident, code = self._card_ids.setdefault(
                customer["id"], (_ident(self.rng, 24), _ident(self.rng, 8).upper())
            )
        return {
            "id": f"v_{ident}",
            "code": f"LC-{code}",
            "type": "LOYALTY_CARD",
            "campaign": camp["name"],
            "campaign_id": camp["id"],
            "loyalty_card": {"points": pts, "balance": pts},
            "object": "voucher",
        }

    def _gift_card(self) -> dict[str, Any]:
        camp = self._campaigns["GIFT_VOUCHERS"]
        amount = self._rand(1000, 20000)
        return {
            "id": f"v_{_ident(self.rng, 24)}",
            "code": f"GIFT-{_ident(self.rng, 8).upper()}",
            "type": "GIFT_VOUCHER",
            "campaign": camp["name"],
            "campaign_id": camp["id"],
            "gift": {"amount": amount, "balance": amount},
            "object": "voucher",
        }

    def _discount_voucher(self) -> dict[str, Any]:
        camp = self._campaigns["DISCOUNT_COUPONS"]
        return {
            "id": f"v_{_ident(self.rng, 24)}",
            "code": f"SPRING-{_ident(self.rng, 6).upper()}",
            "type": "DISCOUNT_VOUCHER",
            "campaign": camp["name"],
            "campaign_id": camp["id"],
            "discount": {"type": "PERCENT", "percent_off": 20},
            "object": "voucher",
        }

    def _order(self, customer: dict[str, Any], status: str) -> dict[str, Any]:
        rng = self.rng
        items: list[dict[str, Any]] = []
        for _ in range(self._rand(1, 4)):
            qty, price = self._rand(1, 4), self._rand(500, 9000)
            items.append(
                {
                    "sku_id": f"sku_{_ident(rng, 16)}",
                    "product_id": f"prod_{_ident(rng, 16)}",
                    "quantity": qty,
                    "price": price,
                    "amount": qty * price,
                    "object": "order_item",
                }
            )
        amount = sum(i["amount"] for i in items)
        return {
            "id": f"ord_{_ident(rng, 24)}",
            "source_id": f"order-{self._rand(10**6, 10**7)}",
            "status": status,
            "amount": amount,
            "total_amount": amount,
            "items": items,
            "customer_id": customer["id"],
            "metadata": {"store": rng.choice(["web", "app", "pos"])},
            "created_at": self._ts_peek(),
            "object": "order",
        }

    def _balance(self, points: int, total: int) -> dict[str, Any]:
        return {
            "type": "loyalty_card",
            "total": total,
            "points": points,
            "balance": total,
            "related_object": {"type": "voucher", "id": f"v_{_ident(self.rng, 24)}"},
            "object": "balance",
        }

    def _transaction(self, type_: str, reason: str | None = None) -> dict[str, Any]:
        return {
            "id": f"vtx_{self._hex()}",
            "source_id": None,
            "reason": reason,
            "type": type_,
            "details": {"balance": {"type": "loyalty_card", "points": self._rand(1, 100)}},
            "created_at": self._ts_peek(),
        }

    def _redemption(self, customer: dict[str, Any], ok: bool, order_id: str) -> dict[str, Any]:
        return {
            "id": f"r_{self._hex()}",
            "object": "redemption",
            "date": self._ts_peek(),
            "customer_id": customer["id"],
            "amount": self._rand(100, 5000),
            "result": "SUCCESS" if ok else "FAILURE",
            "status": "SUCCEEDED" if ok else "FAILED",
            "failure_code": None if ok else "voucher_expired",
            "failure_message": None if ok else "voucher expired",
            "channel": {"channel_id": "user_api", "channel_type": "API"},
            "order_id": order_id,
        }

    def _holder(
        self, customer: dict[str, Any], voucher: dict[str, Any], role: str
    ) -> dict[str, Any]:
        return {
            "id": f"rh_{self._hex()}",
            "redeemable_id": voucher["id"],
            "redeemable_object": "voucher",
            "campaign_id": voucher["campaign_id"],
            "customer_id": customer["id"],
            "holder_role": role,
            "created_at": self._ts_peek(),
            "object": "redeemable_holder",
        }

    # --- scenarios ---

    def _emit(self, type_: str, data: dict[str, Any]) -> None:
        self._pending.append((type_, data))

    def _order_paid_scenario(self, customer: dict[str, Any]) -> None:
        """One `POST /orders` (status PAID) causes 3 or 4 events sharing one group_id."""
        camp = self._campaigns["LOYALTY_PROGRAM"]
        short = self._short_customer(customer)
        order = self._order(customer, "PAID")
        card = self._loyalty_card(camp, customer)
        pts = max(1, order["amount"] // 1000)
        total = card["loyalty_card"]["points"] + pts
        self._emit(T.ORDER_PAID, {"customer": customer, "order": order})
        self._emit(
            T.REWARDED_LOYALTY_POINTS,
            {
                "customer": short,
                "voucher": card,
                "campaign": camp,
                "earning_rule": {"id": f"ern_{_ident(self.rng, 24)}", "object": "earning_rule"},
                "balance": self._balance(pts, total),
                "order": {
                    "id": order["id"],
                    "source_id": order["source_id"],
                    "amount": order["amount"],
                    "object": "order",
                },
                "event": {
                    "id": f"evcus_{self._hex()}",
                    "type": "customer.order.paid",
                    "category": "ACTION",
                    "group_id": self._group_id,
                },
            },
        )
        self._emit(
            T.VOUCHER_LOYALTY_CARD_POINTS_ADDED,
            {
                "customer": short,
                "campaign": camp,
                "voucher": card,
                "balance": self._balance(pts, total),
                "transaction": self._transaction("POINTS_ACCRUAL"),
            },
        )
        if self.rng.random() < 0.25:
            lo, hi = self.rng.sample(range(len(self._tiers)), 2)
            self._emit(
                T.LOYALTY_TIER_UPGRADED,
                {
                    "customer": short,
                    "campaign": camp,
                    "loyalty_tier_from": self._tiers[min(lo, hi)],
                    "loyalty_tier_to": self._tiers[max(lo, hi)],
                    "created_at": self._ts_peek(),
                },
            )

    def _redemption_scenario(self, customer: dict[str, Any]) -> None:
        """One `POST /redemptions` with an order: the redemption, then the order events."""
        short = self._short_customer(customer)
        order = self._order(customer, "PAID")
        voucher = self._discount_voucher()
        self._emit(
            T.REDEMPTION_SUCCEEDED,
            {
                "customer": short,
                "order": order,
                "campaign": self._campaigns["DISCOUNT_COUPONS"],
                "voucher": voucher,
                "redemption": self._redemption(customer, True, order["id"]),
            },
        )
        self._emit(T.ORDER_CREATED, {"customer": short, "order": {**order, "status": "CREATED"}})
        self._emit(T.ORDER_PAID, {"customer": short, "order": order})

    def _single(self, type_: EventType) -> Callable[[dict[str, Any]], None]:
        def scenario(customer: dict[str, Any]) -> None:
            self._emit(type_.value, self._data_for(type_.value, customer))

        return scenario

    def _data_for(self, t: str, customer: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        short = self._short_customer(customer)
        loyalty = self._campaigns["LOYALTY_PROGRAM"]
        parts = t.split(".")
        if t in (T.CREATED, T.UPDATED, T.DELETED):
            return {"customer": customer}
        if t == T.CONFIRMED:
            return {
                "customer": customer,
                "unconfirmed_customer": {"id": f"ucust_{_ident(rng, 24)}"},
            }
        if t == T.REFERRED:
            referrer = self._pick_customer()
            code = self._discount_voucher()
            code["campaign_id"] = self._campaigns["REFERRAL_PROGRAM"]["id"]
            return {
                "customer": short,
                "referrer": self._short_customer(referrer),
                "campaign": self._campaigns["REFERRAL_PROGRAM"],
                "voucher": code,
                "redemption": self._redemption(customer, True, f"ord_{_ident(rng, 24)}"),
            }
        if t == T.CUSTOM_EVENT:
            return {
                "event": {
                    "id": f"event_{self._hex()}",
                    "type": rng.choice(["app_opened", "review_left", "newsletter_signup"]),
                    "customer": {"id": customer["id"]},
                    "metadata": {"source": "mobile"},
                    "created_at": self._ts_peek(),
                    "object": "event",
                },
                "event_schema": {"id": f"ms_{_ident(rng, 24)}", "name": "app_opened"},
                "customer": short,
            }
        if parts[1] == "segment":
            return {
                "customer": short,
                "segment": {
                    "id": f"seg_{_ident(rng, 24)}",
                    "name": "VIP customers",
                    "object": "segment",
                },
            }
        if len(parts) == 3 and parts[1] in MESSAGING_CHANNELS:
            data: dict[str, Any] = {
                "customer": short,
                "distribution": {
                    "id": f"distr_{_ident(rng, 24)}",
                    "name": f"{parts[1]} campaign",
                    "channel": parts[1].upper(),
                },
            }
            data[
                {"sent": "sent_at", "recovered": "recovered_at", "failed": "failed_at"}[parts[2]]
            ] = self._ts_peek()
            return data
        if t == T.REWARDED:
            camp = self._campaigns["REFERRAL_PROGRAM"]
            voucher = self._loyalty_card(loyalty, customer)
            return {
                "customer": short,
                "holder": self._short_customer(customer),
                "voucher": voucher,
                "campaign": camp,
                "redemption": self._redemption(customer, True, f"ord_{_ident(rng, 24)}"),
                "reward": {
                    "id": f"rew_{_ident(rng, 24)}",
                    "name": "100 points",
                    "type": "COIN",
                    "object": "reward",
                },
                "referral_tier": {"id": f"rtr_{self._hex()}", "name": "First referral"},
                "balance": {"amount": 0, "points": 100},
            }
        if t == T.REWARDED_LOYALTY_POINTS:
            card = self._loyalty_card(loyalty, customer)
            return {
                "customer": short,
                "voucher": card,
                "campaign": loyalty,
                "loyalty_tier": rng.choice(self._tiers),
                "earning_rule": {"id": f"ern_{_ident(rng, 24)}", "object": "earning_rule"},
                "balance": self._balance(50, card["loyalty_card"]["points"] + 50),
                "event": {
                    "id": f"evcus_{self._hex()}",
                    "type": "customer.segment.entered",
                    "category": "ACTION",
                    "group_id": self._group_id,
                },
            }
        if t == T.VOUCHER_GIFT_BALANCE_ADDED:
            gift = self._gift_card()
            added = self._rand(500, 5000)
            return {
                "customer": short,
                "campaign": self._campaigns["GIFT_VOUCHERS"],
                "voucher": gift,
                "balance": {
                    "type": "gift_voucher",
                    "total": gift["gift"]["amount"] + added,
                    "amount": added,
                    "balance": gift["gift"]["balance"] + added,
                    "object": "balance",
                },
                "transaction": self._transaction("CREDITS_ADDITION", "top-up"),
            }
        if ".pending_points." in t:
            card = self._loyalty_card(loyalty, customer)
            order = self._order(customer, "PAID")
            pts = self._rand(10, 200)
            data = {
                "customer": short,
                "campaign": loyalty,
                "voucher": card,
                "voucher_pending_points_balance": {"total": pts, "object": "balance"},
                "order": order,
                "pending_points": {
                    "id": f"lopp_{self._hex()}",
                    "voucher_id": card["id"],
                    "campaign_id": loyalty["id"],
                    "customer_id": customer["id"],
                    "order_id": order["id"],
                    "points": pts,
                    "activates_at": "2024-04-10T00:00:00.000Z",
                    "details": {"earning_rule": {"id": f"ern_{_ident(rng, 24)}"}},
                    "object": "loyalty_pending_points",
                },
            }
            if t.endswith(".activated"):
                total = card["loyalty_card"]["points"] + pts
                data["balance"] = self._balance(pts, total)
                data["transaction"] = self._transaction("POINTS_ACCRUAL")
            return data
        if t in (T.VOUCHER_LOYALTY_CARD_POINTS_ADDED, T.VOUCHER_LOYALTY_CARD_POINTS_ACTIVATED):
            card = self._loyalty_card(loyalty, customer)
            pts = self._rand(10, 200)
            return {
                "customer": short,
                "campaign": loyalty,
                "voucher": card,
                "balance": self._balance(pts, card["loyalty_card"]["points"] + pts),
                "transaction": self._transaction("POINTS_ADDITION", "manual bonus"),
            }
        if t == T.VOUCHER_LOYALTY_CARD_POINTS_TRANSFERRED:
            src, dst = self._loyalty_card(loyalty), self._loyalty_card(loyalty, customer)
            pts = self._rand(10, 100)
            return {
                "customer": short,
                "campaign": loyalty,
                "voucher": dst,
                "balance": self._balance(pts, dst["loyalty_card"]["points"] + pts),
                "transaction": self._transaction("POINTS_TRANSFER_IN"),
                "source_voucher": src,
                "destination_voucher": dst,
            }
        if t == T.VOUCHER_LOYALTY_CARD_POINTS_EXPIRED:
            card = self._loyalty_card(loyalty, customer)
            pts = self._rand(1, 100)
            return {
                "customer": short,
                "campaign": loyalty,
                "voucher": card,
                "points": -pts,
                "buckets": [
                    {
                        "id": f"lopb_{self._hex()}",
                        "voucher_id": card["id"],
                        "campaign_id": loyalty["id"],
                        "bucket": {"total_points": pts},
                        "status": "EXPIRED",
                        "expires_at": "2024-03-10",
                        "object": "loyalty_points_bucket",
                    }
                ],
                "transaction": self._transaction("POINTS_EXPIRATION"),
            }
        if t == T.VOUCHER_DELETED:
            return {
                "customer": short,
                "campaign": self._campaigns["DISCOUNT_COUPONS"],
                "voucher": self._discount_voucher(),
            }
        if parts[1] == "publication":
            ok = parts[2] == "succeeded"
            voucher = self._discount_voucher()
            return {
                "customer": short,
                "campaign": self._campaigns["DISCOUNT_COUPONS"],
                "publication": {
                    "id": f"pub_{_ident(rng, 24)}",
                    "channel": "API",
                    "source_id": f"pub-{self._hex()}",
                    "customer_id": customer["id"],
                    "vouchers": [voucher["code"]] if ok else [],
                    "result": "SUCCESS" if ok else "FAILURE",
                    "failure_code": None if ok else "no_voucher_suitable_for_publication",
                    "object": "publication",
                },
                "voucher": voucher,
            }
        if parts[1] == "validation":
            ok = parts[2] == "succeeded"
            voucher = self._discount_voucher()
            red = {
                "id": voucher["code"],
                "object": "voucher",
                "status": "APPLICABLE" if ok else "INAPPLICABLE",
            }
            return {
                "customer": short,
                "validation": {
                    "id": f"valid_{self._hex()}",
                    "session_id": f"ssn_{_ident(rng, 24)}",
                    "status": "VALID" if ok else "INVALID",
                    "customer_id": customer["id"],
                    "redeemables": [red] if ok else [],
                    "inapplicable_redeemables": [] if ok else [red],
                    "created_at": self._ts_peek(),
                    "object": "validation",
                },
            }
        if parts[1] == "redemption":
            ok = parts[-1] == "succeeded"
            order = self._order(customer, "PAID")
            voucher = self._discount_voucher()
            data = {
                "customer": short,
                "order": order,
                "campaign": self._campaigns["DISCOUNT_COUPONS"],
                "voucher": voucher,
                "holder": self._holder(customer, voucher, "OWNER"),
                "redemption": self._redemption(customer, ok or parts[2] == "rollback", order["id"]),
            }
            if parts[2] == "rollback":
                data["redemption_rollback"] = {
                    "id": f"rr_{self._hex()}",
                    "object": "redemption_rollback",
                    "date": self._ts_peek(),
                    "customer_id": customer["id"],
                    "amount": -data["redemption"]["amount"],
                    "redemption": data["redemption"]["id"],
                    "reason": "order canceled",
                    "result": "SUCCESS" if ok else "FAILURE",
                    "status": "SUCCEEDED" if ok else "FAILED",
                }
            return data
        if parts[1] == "order":
            status = {
                "created": "CREATED",
                "updated": "CREATED",
                "paid": "PAID",
                "canceled": "CANCELED",
                "fulfilled": "FULFILLED",
                "processing": "PROCESSING",
            }[parts[2]]
            return {"customer": short, "order": self._order(customer, status)}
        if parts[1] == "reward_redemptions":
            card = self._loyalty_card(loyalty, customer)
            state = {
                "created": "PENDING",
                "pending": "PENDING",
                "completed": "COMPLETED",
                "rolledback": "ROLLED_BACK",
            }[parts[2]]
            reward = {
                "id": f"rew_{_ident(rng, 24)}",
                "name": "Free coffee",
                "type": "MATERIAL",
                "object": "reward",
            }
            return {
                "customer": short,
                "holder": self._holder(customer, card, "OWNER"),
                "voucher": card,
                "campaign": loyalty,
                "reward_redemption": {
                    "id": f"rewr_{self._hex()}",
                    "state": state,
                    "reward_id": reward["id"],
                    "voucher_id": card["id"],
                    "customer_id": customer["id"],
                    "object": "reward_redemption",
                },
                "reward": reward,
                "reward_assignment": {
                    "id": f"rewa_{_ident(rng, 24)}",
                    "reward_id": reward["id"],
                    "related_object_id": loyalty["id"],
                    "related_object_type": "campaign",
                    "parameters": {"loyalty": {"points": 100}},
                    "object": "reward_assignment",
                },
                "balance": self._balance(-100, card["loyalty_card"]["points"]),
            }
        if t == T.LOYALTY_UPDATED:
            return {
                "customer": short,
                "campaign": loyalty,
                "loyalty": {"points": self._rand(0, 400), "referred_customers": 0},
                "created_at": self._ts_peek(),
            }
        if t in (T.LOYALTY_TIER_UPGRADED, T.LOYALTY_TIER_DOWNGRADED):
            a, b = self._tiers[0], self._tiers[self._rand(1, 3)]
            lo, hi = (a, b) if t == T.LOYALTY_TIER_UPGRADED else (b, a)
            return {
                "customer": short,
                "campaign": loyalty,
                "loyalty_tier_from": lo,
                "loyalty_tier_to": hi,
                "created_at": self._ts_peek(),
            }
        if parts[1] == "loyalty":
            data = {
                "customer": short,
                "campaign": loyalty,
                "loyalty_tier": rng.choice(self._tiers),
                "created_at": self._ts_peek(),
            }
            if t == T.LOYALTY_TIER_EXPIRATION_CHANGED:
                data["expiration_date"] = "2025-03-31"
            return data
        if parts[1] == "holder":
            voucher = self._discount_voucher()
            return {
                "holder": self._holder(
                    customer, voucher, rng.choice(["OWNER", "REFERRER", "REFEREE"])
                ),
                "voucher": voucher,
                "campaign": self._campaigns["DISCOUNT_COUPONS"],
                "customer": short,
            }
        raise AssertionError(f"no data builder for {t}")

    # --- bad events ---

    def _bad(self) -> Record:
        kind = self.rng.choice(BAD_KINDS)
        customer = self._pick_customer()
        self._group_id = self._gid()
        t = T.ORDER_PAID.value
        good = self._envelope(
            t, {"customer": self._short_customer(customer), "order": self._order(customer, "PAID")}
        )
        if kind == "invalid_utf8":
            value = good.replace(b'"name":"', b'"name":"\xff\xfe', 1)
        elif kind == "truncated_json":
            value = good[: len(good) // 2]
        elif kind == "not_an_object":
            value = b"[" + good + b"]"
        elif kind == "missing_id":
            value = b'{"id_":' + good[len(b'{"id":') :]
        elif kind == "numeric_group_id":
            value = good.replace(f'"group_id":"{self._group_id}"'.encode(), b'"group_id":7')
        elif kind == "malformed_created_at":
            value = msgspec.json.encode(
                {**msgspec.json.decode(good), "created_at": "2024-05-13T12: 26: 06.250Z"}
            )
        else:  # wrong_type_in_data
            value = good.replace(b'"amount":', b'"amount":"', 1).replace(
                b',"total_amount"', b'","total_amount"', 1
            )
        return Record(customer["id"].encode(), value, f"bad:{kind}", t)


def generate_events(
    count: int, seed: int = 0, duplicate_share: float = 0.0, bad_share: float = 0.0
) -> Iterator[bytes]:
    """`count` event values (JSON bytes); use `EventGenerator.records` to know which are
    duplicates or bad."""
    for rec in EventGenerator(seed, duplicate_share, bad_share).records(count):
        yield rec.value


def expected_counts(
    count: int, seed: int = 0, duplicate_share: float = 0.0, bad_share: float = 0.0
) -> Counts:
    """The counts `generate_events` with the same arguments produces (it is deterministic)."""
    gen = EventGenerator(seed, duplicate_share, bad_share)
    for _ in gen.records(count):
        pass
    return gen.counts
