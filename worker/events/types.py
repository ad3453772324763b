"""The 74 known `CustomerActivity` types, their family, and whether their `data` has a typed shape.

`type` on the wire stays an open string: an unknown type is a normal event (a newer Voucherify
release), so the envelope never validates it against this list. The list is for routing, the
`types` command and the generator.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """Every type value of the `CustomerActivity` TypeEnum (seed), in the seed's order."""

    CONFIRMED = "customer.confirmed"
    CREATED = "customer.created"
    UPDATED = "customer.updated"
    DELETED = "customer.deleted"
    REFERRED = "customer.referred"
    CUSTOM_EVENT = "customer.custom_event"
    SEGMENT_ENTERED = "customer.segment.entered"
    SEGMENT_LEFT = "customer.segment.left"
    SMS_SENT = "customer.sms.sent"
    SMS_RECOVERED = "customer.sms.recovered"
    SMS_FAILED = "customer.sms.failed"
    EMAIL_SENT = "customer.email.sent"
    EMAIL_RECOVERED = "customer.email.recovered"
    EMAIL_FAILED = "customer.email.failed"
    ACTIVECAMPAIGN_SENT = "customer.activecampaign.sent"
    ACTIVECAMPAIGN_RECOVERED = "customer.activecampaign.recovered"
    ACTIVECAMPAIGN_FAILED = "customer.activecampaign.failed"
    BRAZE_SENT = "customer.braze.sent"
    BRAZE_RECOVERED = "customer.braze.recovered"
    BRAZE_FAILED = "customer.braze.failed"
    MAILCHIMP_SENT = "customer.mailchimp.sent"
    MAILCHIMP_RECOVERED = "customer.mailchimp.recovered"
    MAILCHIMP_FAILED = "customer.mailchimp.failed"
    INTERCOM_SENT = "customer.intercom.sent"
    INTERCOM_RECOVERED = "customer.intercom.recovered"
    INTERCOM_FAILED = "customer.intercom.failed"
    SHOPIFY_SENT = "customer.shopify.sent"
    SHOPIFY_RECOVERED = "customer.shopify.recovered"
    SHOPIFY_FAILED = "customer.shopify.failed"
    KLAVIYO_SENT = "customer.klaviyo.sent"
    KLAVIYO_RECOVERED = "customer.klaviyo.recovered"
    KLAVIYO_FAILED = "customer.klaviyo.failed"
    BATCH_SENT = "customer.batch.sent"
    BATCH_RECOVERED = "customer.batch.recovered"
    BATCH_FAILED = "customer.batch.failed"
    REWARDED = "customer.rewarded"
    REWARDED_LOYALTY_POINTS = "customer.rewarded.loyalty_points"
    VOUCHER_GIFT_BALANCE_ADDED = "customer.voucher.gift.balance_added"
    VOUCHER_LOYALTY_CARD_PENDING_POINTS_ACTIVATED = (
        "customer.voucher.loyalty_card.pending_points.activated"
    )
    VOUCHER_LOYALTY_CARD_PENDING_POINTS_ADDED = "customer.voucher.loyalty_card.pending_points.added"
    VOUCHER_LOYALTY_CARD_PENDING_POINTS_CANCELED = (
        "customer.voucher.loyalty_card.pending_points.canceled"
    )
    VOUCHER_LOYALTY_CARD_PENDING_POINTS_UPDATED = (
        "customer.voucher.loyalty_card.pending_points.updated"
    )
    VOUCHER_LOYALTY_CARD_POINTS_ACTIVATED = "customer.voucher.loyalty_card.points_activated"
    VOUCHER_LOYALTY_CARD_POINTS_ADDED = "customer.voucher.loyalty_card.points_added"
    VOUCHER_LOYALTY_CARD_POINTS_TRANSFERRED = "customer.voucher.loyalty_card.points_transferred"
    VOUCHER_LOYALTY_CARD_POINTS_EXPIRED = "customer.voucher.loyalty_card.points_expired"
    VOUCHER_DELETED = "customer.voucher.deleted"
    PUBLICATION_SUCCEEDED = "customer.publication.succeeded"
    PUBLICATION_FAILED = "customer.publication.failed"
    VALIDATION_SUCCEEDED = "customer.validation.succeeded"
    VALIDATION_FAILED = "customer.validation.failed"
    REDEMPTION_FAILED = "customer.redemption.failed"
    REDEMPTION_SUCCEEDED = "customer.redemption.succeeded"
    REDEMPTION_ROLLBACK_FAILED = "customer.redemption.rollback.failed"
    REDEMPTION_ROLLBACK_SUCCEEDED = "customer.redemption.rollback.succeeded"
    ORDER_CANCELED = "customer.order.canceled"
    ORDER_CREATED = "customer.order.created"
    ORDER_FULFILLED = "customer.order.fulfilled"
    ORDER_PAID = "customer.order.paid"
    ORDER_PROCESSING = "customer.order.processing"
    ORDER_UPDATED = "customer.order.updated"
    REWARD_REDEMPTIONS_CREATED = "customer.reward_redemptions.created"
    REWARD_REDEMPTIONS_PENDING = "customer.reward_redemptions.pending"
    REWARD_REDEMPTIONS_COMPLETED = "customer.reward_redemptions.completed"
    REWARD_REDEMPTIONS_ROLLEDBACK = "customer.reward_redemptions.rolledback"
    LOYALTY_UPDATED = "customer.loyalty.updated"
    LOYALTY_TIER_UPGRADED = "customer.loyalty.tier.upgraded"
    LOYALTY_TIER_DOWNGRADED = "customer.loyalty.tier.downgraded"
    LOYALTY_TIER_PROLONGED = "customer.loyalty.tier.prolonged"
    LOYALTY_TIER_EXPIRATION_CHANGED = "customer.loyalty.tier.expiration.changed"
    LOYALTY_TIER_JOINED = "customer.loyalty.tier.joined"
    LOYALTY_TIER_LEFT = "customer.loyalty.tier.left"
    HOLDER_ASSIGNMENT_CREATED = "customer.holder.assignment.created"
    HOLDER_ASSIGNMENT_DELETED = "customer.holder.assignment.deleted"


#: The known `type` values in seed order (for display, `routes` and the typo warning). Not used
#: for validation: an unknown type is normal (new ones appear over time).
KNOWN_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)

#: Messaging channels: `customer.<channel>.{sent,recovered,failed}` share one family.
MESSAGING_CHANNELS: tuple[str, ...] = (
    "sms", "email", "activecampaign", "braze", "mailchimp", "intercom", "shopify", "klaviyo",
    "batch",
)  # fmt: skip


def _family_table() -> dict[str, str]:
    fam: dict[str, str] = {}
    for t in ("created", "updated", "deleted", "confirmed", "referred"):
        fam[f"customer.{t}"] = "customer"
    fam["customer.custom_event"] = "custom_event"
    fam["customer.segment.entered"] = fam["customer.segment.left"] = "segment"
    for ch in MESSAGING_CHANNELS:
        for outcome in ("sent", "recovered", "failed"):
            fam[f"customer.{ch}.{outcome}"] = "messaging"
    fam["customer.rewarded"] = fam["customer.rewarded.loyalty_points"] = "rewarded"
    fam["customer.voucher.gift.balance_added"] = "gift_balance"
    for s in ("added", "updated", "canceled", "activated"):
        fam[f"customer.voucher.loyalty_card.pending_points.{s}"] = "pending_points"
    for s in ("added", "activated", "transferred", "expired"):
        fam[f"customer.voucher.loyalty_card.points_{s}"] = "loyalty_card_points"
    fam["customer.voucher.deleted"] = "voucher_deleted"
    fam["customer.publication.succeeded"] = fam["customer.publication.failed"] = "publication"
    fam["customer.validation.succeeded"] = fam["customer.validation.failed"] = "validation"
    fam["customer.redemption.succeeded"] = fam["customer.redemption.failed"] = "redemption"
    for s in ("succeeded", "failed"):
        fam[f"customer.redemption.rollback.{s}"] = "redemption_rollback"
    for s in ("created", "updated", "paid", "canceled", "fulfilled", "processing"):
        fam[f"customer.order.{s}"] = "order"
    for s in ("created", "pending", "completed", "rolledback"):
        fam[f"customer.reward_redemptions.{s}"] = "reward_redemption"
    fam["customer.loyalty.updated"] = "loyalty_tier"
    for s in ("upgraded", "downgraded", "prolonged", "joined", "left", "expiration.changed"):
        fam[f"customer.loyalty.tier.{s}"] = "loyalty_tier"
    fam["customer.holder.assignment.created"] = "holder_assignment"
    fam["customer.holder.assignment.deleted"] = "holder_assignment"
    return fam


#: type -> family name (the groups of issue #3). Every known type has exactly one family.
FAMILIES: dict[str, str] = _family_table()

#: Types listed in the enum whose `data` shape is not published: `event.data` is a plain dict.
UNTYPED_TYPES: frozenset[str] = frozenset({EventType.VOUCHER_LOYALTY_CARD_POINTS_ACTIVATED.value})


def family_of(type_: str) -> str | None:
    """The family of a known type (e.g. "order" for "customer.order.paid"); None if unknown."""
    return FAMILIES.get(type_)
