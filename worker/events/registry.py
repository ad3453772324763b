"""Which typed `data` struct each known type decodes to."""

from __future__ import annotations

from worker.events import models as m
from worker.events.types import MESSAGING_CHANNELS, UNTYPED_TYPES, EventType

T = EventType


def _table() -> dict[str, type[m.EventData]]:
    t: dict[str, type[m.EventData]] = {
        T.CREATED: m.CustomerData,
        T.UPDATED: m.CustomerData,
        T.DELETED: m.CustomerData,
        T.CONFIRMED: m.CustomerConfirmedData,
        T.REFERRED: m.CustomerReferredData,
        T.CUSTOM_EVENT: m.CustomEventData,
        T.SEGMENT_ENTERED: m.SegmentData,
        T.SEGMENT_LEFT: m.SegmentData,
        T.REWARDED: m.RewardedData,
        T.REWARDED_LOYALTY_POINTS: m.RewardedLoyaltyPointsData,
        T.VOUCHER_GIFT_BALANCE_ADDED: m.GiftBalanceAddedData,
        T.VOUCHER_LOYALTY_CARD_PENDING_POINTS_ADDED: m.PendingPointsData,
        T.VOUCHER_LOYALTY_CARD_PENDING_POINTS_UPDATED: m.PendingPointsData,
        T.VOUCHER_LOYALTY_CARD_PENDING_POINTS_CANCELED: m.PendingPointsData,
        T.VOUCHER_LOYALTY_CARD_PENDING_POINTS_ACTIVATED: m.PendingPointsData,
        T.VOUCHER_LOYALTY_CARD_POINTS_ADDED: m.PointsAddedData,
        T.VOUCHER_LOYALTY_CARD_POINTS_TRANSFERRED: m.PointsTransferredData,
        T.VOUCHER_LOYALTY_CARD_POINTS_EXPIRED: m.PointsExpiredData,
        T.VOUCHER_DELETED: m.VoucherDeletedData,
        T.PUBLICATION_SUCCEEDED: m.PublicationData,
        T.PUBLICATION_FAILED: m.PublicationData,
        T.VALIDATION_SUCCEEDED: m.ValidationData,
        T.VALIDATION_FAILED: m.ValidationData,
        T.REDEMPTION_SUCCEEDED: m.RedemptionData,
        T.REDEMPTION_FAILED: m.RedemptionData,
        T.REDEMPTION_ROLLBACK_SUCCEEDED: m.RedemptionRollbackData,
        T.REDEMPTION_ROLLBACK_FAILED: m.RedemptionRollbackData,
        T.LOYALTY_UPDATED: m.LoyaltyUpdatedData,
        T.LOYALTY_TIER_UPGRADED: m.LoyaltyTierChangedData,
        T.LOYALTY_TIER_DOWNGRADED: m.LoyaltyTierChangedData,
        T.LOYALTY_TIER_PROLONGED: m.LoyaltyTierData,
        T.LOYALTY_TIER_JOINED: m.LoyaltyTierData,
        T.LOYALTY_TIER_LEFT: m.LoyaltyTierData,
        T.LOYALTY_TIER_EXPIRATION_CHANGED: m.LoyaltyTierExpirationChangedData,
        T.HOLDER_ASSIGNMENT_CREATED: m.HolderAssignmentData,
        T.HOLDER_ASSIGNMENT_DELETED: m.HolderAssignmentData,
    }
    for s in ("created", "updated", "paid", "canceled", "fulfilled", "processing"):
        t[f"customer.order.{s}"] = m.OrderData
    for s in ("created", "pending", "completed", "rolledback"):
        t[f"customer.reward_redemptions.{s}"] = m.RewardRedemptionData
    for ch in MESSAGING_CHANNELS:
        t[f"customer.{ch}.sent"] = m.MessagingSentData
        t[f"customer.{ch}.recovered"] = m.MessagingRecoveredData
        t[f"customer.{ch}.failed"] = m.MessagingFailedData
    # Plain str keys (not enum members) so lookups with wire strings hash the same way.
    return {str(k): v for k, v in t.items()}


#: type -> typed `data` struct, for every known type with a published shape.
DATA_TYPES: dict[str, type[m.EventData]] = _table()

assert not set(DATA_TYPES) & UNTYPED_TYPES


def data_type_of(type_: str) -> type[m.EventData] | None:
    """The typed `data` struct of a type, or None (unknown type, or no published shape)."""
    return DATA_TYPES.get(type_)
