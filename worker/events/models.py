"""Typed `data` of every event type with a published shape, grouped by family.

Shapes follow the public Voucherify OpenAPI spec (see docs/domain notes in the README):
- every field is optional and nullable (the spec marks everything nullable, and examples disagree
  with the schemas), so a missing key is `None`, never an error;
- types are strict where the meaning needs them: ids and codes are `str`, points and amounts
  `int` (Voucherify amounts are integer cents), so `"points": "12"` is a schema error that names
  its path;
- unknown fields are ignored (new Voucherify releases add fields), and enum-like fields
  (`type`, `status`, `result`, `holder_role`, ...) are open `str`: the documented values are in
  the docstrings, a new value decodes fine;
- sub-objects that many families share (customer, campaign, voucher, loyalty tier, order,
  balance, transaction, ...) are defined once here.

Every data struct derives from `EventData`, which also accepts the *wrapped* shape
`{"data": {...}, "event_source": {...}}`: see `worker.events.envelope`.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Metadata = dict[str, Any]


class _Obj(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Base of every sub-object: keyword-only, defaults omitted when encoding."""


# --- shared sub-objects -------------------------------------------------------------------------


class Address(_Obj):
    city: str | None = None
    state: str | None = None
    line_1: str | None = None
    line_2: str | None = None
    country: str | None = None
    postal_code: str | None = None


class GiftSummary(_Obj):
    redeemed_amount: int | None = None
    amount_to_go: int | None = None


class LoyaltyCardSummary(_Obj):
    redeemed_points: int | None = None
    points_to_go: int | None = None


class RedemptionsSummary(_Obj):
    total_redeemed: int | None = None
    total_failed: int | None = None
    total_succeeded: int | None = None
    total_rolled_back: int | None = None
    total_rollback_failed: int | None = None
    total_rollback_succeeded: int | None = None
    gift: GiftSummary | None = None
    loyalty_card: LoyaltyCardSummary | None = None


class OrdersSummary(_Obj):
    total_amount: int | None = None
    total_count: int | None = None
    average_amount: float | None = None
    last_order_amount: int | None = None
    last_order_date: str | None = None


class CustomerSummary(_Obj):
    redemptions: RedemptionsSummary | None = None
    orders: OrdersSummary | None = None


class CustomerLoyalty(_Obj):
    """A customer's loyalty totals; `campaigns` maps a campaign id to its points (free-form)."""

    points: int | None = None
    referred_customers: int | None = None
    campaigns: dict[str, Any] | None = None


class CustomerReferrals(_Obj):
    total: int | None = None
    campaigns: list[dict[str, Any]] | None = None


class Customer(_Obj):
    """A customer (`cust_…`). Events carry a full or a trimmed copy; all fields optional."""

    id: str | None = None
    source_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    description: str | None = None
    address: Address | None = None
    birthdate: str | None = None
    birthday: str | None = None
    metadata: Metadata | None = None
    summary: CustomerSummary | None = None
    loyalty: CustomerLoyalty | None = None
    referrals: CustomerReferrals | None = None
    system_metadata: Metadata | None = None
    created_at: str | None = None
    updated_at: str | None = None
    object: str | None = None


class UnconfirmedCustomer(_Obj):
    """The pre-confirmation customer record (`ucust_…`)."""

    id: str | None = None
    source_id: str | None = None
    name: str | None = None
    email: str | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    object: str | None = None


class Campaign(_Obj):
    """A campaign (`camp_…`). campaign_type: LOYALTY_PROGRAM, DISCOUNT_COUPONS, GIFT_VOUCHERS,
    REFERRAL_PROGRAM, PROMOTION, ... (open); type: AUTO_UPDATE / STATIC (open)."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    campaign_type: str | None = None
    type: str | None = None
    category: str | None = None
    category_id: str | None = None
    active: bool | None = None
    start_date: str | None = None
    expiration_date: str | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    updated_at: str | None = None
    object: str | None = None


class PointsRange(_Obj):
    """A tier's points range; `from` is a Python keyword, hence `from_` (wire name `from`)."""

    from_: int | None = msgspec.field(default=None, name="from")
    to: int | None = None


class LoyaltyCard(_Obj):
    points: int | None = None
    balance: int | None = None
    next_expiration_date: str | None = None
    next_expiration_points: int | None = None
    pending_points: int | None = None
    expired_points: int | None = None
    subtracted_points: int | None = None


class Gift(_Obj):
    amount: int | None = None
    balance: int | None = None
    subtracted_amount: int | None = None
    effect: str | None = None


class Discount(_Obj):
    """A voucher's discount. type: AMOUNT / PERCENT / UNIT / FIXED (open)."""

    type: str | None = None
    amount_off: int | None = None
    percent_off: float | None = None
    unit_off: float | None = None
    unit_type: str | None = None
    fixed_amount: int | None = None
    amount_limit: int | None = None
    effect: str | None = None


class Voucher(_Obj):
    """A voucher (`v_…`). type: DISCOUNT_VOUCHER / LOYALTY_CARD / GIFT_VOUCHER (open)."""

    id: str | None = None
    code: str | None = None
    type: str | None = None
    campaign: str | None = None
    campaign_id: str | None = None
    category: str | None = None
    category_id: str | None = None
    holder_id: str | None = None
    discount: Discount | None = None
    gift: Gift | None = None
    loyalty_card: LoyaltyCard | None = None
    start_date: str | None = None
    expiration_date: str | None = None
    active: bool | None = None
    is_referral_code: bool | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    updated_at: str | None = None
    object: str | None = None


class LoyaltyTier(_Obj):
    """A loyalty tier (`ltr_…`)."""

    id: str | None = None
    name: str | None = None
    campaign_id: str | None = None
    points: PointsRange | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    updated_at: str | None = None
    object: str | None = None


class OrderItem(_Obj):
    id: str | None = None
    sku_id: str | None = None
    product_id: str | None = None
    source_id: str | None = None
    related_object: str | None = None
    quantity: int | None = None
    amount: int | None = None
    price: int | None = None
    discount_amount: int | None = None
    subtotal_amount: int | None = None
    product: dict[str, Any] | None = None
    sku: dict[str, Any] | None = None
    metadata: Metadata | None = None
    object: str | None = None


class Order(_Obj):
    """An order (`ord_…`). status: CREATED, PAID, CANCELED, FULFILLED, PROCESSING (open)."""

    id: str | None = None
    source_id: str | None = None
    status: str | None = None
    amount: int | None = None
    discount_amount: int | None = None
    items_discount_amount: int | None = None
    total_discount_amount: int | None = None
    total_amount: int | None = None
    applied_discount_amount: int | None = None
    total_applied_discount_amount: int | None = None
    items: list[OrderItem] | None = None
    customer_id: str | None = None
    referrer_id: str | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    updated_at: str | None = None
    object: str | None = None


class RelatedObject(_Obj):
    type: str | None = None
    id: str | None = None


class Balance(_Obj):
    """A balance after an operation: loyalty points ({type, total, points, balance}),
    gift credits ({type, total, amount, balance}) or a reward's ({amount, points}).
    Where the spec has `balance` as a bare int, the field is typed `Balance | int`."""

    type: str | None = None
    total: int | None = None
    points: int | None = None
    amount: int | None = None
    balance: int | None = None
    operation_type: str | None = None
    related_object: RelatedObject | None = None
    object: str | None = None


class Transaction(_Obj):
    """A voucher transaction (`vtx_…`). type: POINTS_ACCRUAL, POINTS_ADDITION, POINTS_TRANSFER_IN,
    POINTS_TRANSFER_OUT, POINTS_EXPIRATION, CREDITS_ADDITION, ... (open: examples disagree)."""

    id: str | None = None
    source_id: str | None = None
    voucher_id: str | None = None
    campaign_id: str | None = None
    source: str | None = None
    reason: str | None = None
    type: str | None = None
    details: dict[str, Any] | None = None
    related_transaction_id: str | None = None
    created_at: str | None = None


class Channel(_Obj):
    channel_id: str | None = None
    channel_type: str | None = None


class Redemption(_Obj):
    """A redemption (`r_…`). result: SUCCESS / FAILURE; status: SUCCEEDED, FAILED, ROLLED_BACK
    (open)."""

    id: str | None = None
    object: str | None = None
    date: str | None = None
    customer_id: str | None = None
    tracking_id: str | None = None
    metadata: Metadata | None = None
    amount: int | None = None
    redemption: str | None = None
    result: str | None = None
    status: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    reason: str | None = None
    channel: Channel | None = None
    related_object_type: str | None = None
    related_object_id: str | None = None
    voucher_id: str | None = None
    order_id: str | None = None
    created_at: str | None = None


class RedemptionRollback(_Obj):
    """A redemption rollback (`rr_…`)."""

    id: str | None = None
    object: str | None = None
    date: str | None = None
    customer_id: str | None = None
    tracking_id: str | None = None
    metadata: Metadata | None = None
    amount: int | None = None
    redemption: str | None = None
    reason: str | None = None
    result: str | None = None
    status: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    channel: Channel | None = None
    created_at: str | None = None


class Holder(_Obj):
    """A holder: either a holder assignment (holder_role OWNER / REFERRER / REFEREE, open) or the
    customer who holds a voucher (then it looks like a trimmed customer)."""

    id: str | None = None
    redeemable_id: str | None = None
    redeemable_object: str | None = None
    campaign_id: str | None = None
    customer_id: str | None = None
    holder_role: str | None = None
    source_id: str | None = None
    name: str | None = None
    email: str | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    object: str | None = None


class Reward(_Obj):
    """A reward (`rew_…`). type: CAMPAIGN / COIN / MATERIAL (open)."""

    id: str | None = None
    name: str | None = None
    type: str | None = None
    parameters: dict[str, Any] | None = None
    metadata: Metadata | None = None
    stock: int | None = None
    redeemed: int | None = None
    created_at: str | None = None
    object: str | None = None


class RewardAssignment(_Obj):
    id: str | None = None
    reward_id: str | None = None
    related_object_id: str | None = None
    related_object_type: str | None = None
    parameters: dict[str, Any] | None = None
    created_at: str | None = None
    object: str | None = None


class RewardRedemption(_Obj):
    """A reward redemption (`rewr_…`). state: PENDING, COMPLETED, ROLLED_BACK, ... (open)."""

    id: str | None = None
    state: str | None = None
    reward_id: str | None = None
    reward_assignment_id: str | None = None
    voucher_id: str | None = None
    customer_id: str | None = None
    holder_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    object: str | None = None


class Segment(_Obj):
    id: str | None = None
    name: str | None = None
    object: str | None = None


class Publication(_Obj):
    """A publication (`pub_…`). result: SUCCESS / FAILURE (open)."""

    id: str | None = None
    channel: str | None = None
    source_id: str | None = None
    customer_id: str | None = None
    vouchers: list[Any] | None = None
    vouchers_id: list[str] | None = None
    result: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    object: str | None = None


class Validation(_Obj):
    """A validation (`valid_…`). status: VALID / INVALID (open)."""

    id: str | None = None
    session_id: str | None = None
    status: str | None = None
    customer_id: str | None = None
    tracking_id: str | None = None
    redeemables: list[dict[str, Any]] | None = None
    inapplicable_redeemables: list[dict[str, Any]] | None = None
    skipped_redeemables: list[dict[str, Any]] | None = None
    order: Order | None = None
    created_at: str | None = None
    object: str | None = None


class PromotionTier(_Obj):
    id: str | None = None
    name: str | None = None
    banner: str | None = None
    campaign: dict[str, Any] | None = None
    metadata: Metadata | None = None
    object: str | None = None


class CustomerRef(_Obj):
    id: str | None = None
    source_id: str | None = None
    object: str | None = None


class CustomEvent(_Obj):
    """A custom event (`event_…`) as sent by the integrator."""

    id: str | None = None
    type: str | None = None
    customer: CustomerRef | None = None
    referral: dict[str, Any] | None = None
    loyalty: dict[str, Any] | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    object: str | None = None


class EventSchema(_Obj):
    id: str | None = None
    name: str | None = None


class TriggerEvent(_Obj):
    """The event that triggered a loyalty points reward (e.g. an order paid)."""

    id: str | None = None
    type: str | None = None
    category: str | None = None
    entity_id: str | None = None
    group_id: str | None = None
    created_at: str | None = None


class EarningRule(_Obj):
    id: str | None = None
    source: dict[str, Any] | None = None
    loyalty: dict[str, Any] | None = None
    metadata: Metadata | None = None
    created_at: str | None = None
    object: str | None = None


class PendingPoints(_Obj):
    """Pending points (`lopp_…`) waiting for `activates_at`."""

    id: str | None = None
    voucher_id: str | None = None
    campaign_id: str | None = None
    customer_id: str | None = None
    order_id: str | None = None
    points: int | None = None
    activates_at: str | None = None
    details: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    object: str | None = None


class PendingPointsBalance(_Obj):
    total: int | None = None
    points: int | None = None
    pending_points: int | None = None
    object: str | None = None


class BucketPoints(_Obj):
    total_points: int | None = None


class PointsBucket(_Obj):
    """An expiring points bucket (`lopb_…`)."""

    id: str | None = None
    voucher_id: str | None = None
    campaign_id: str | None = None
    bucket: BucketPoints | None = None
    status: str | None = None
    expires_at: str | None = None
    created_at: str | None = None
    object: str | None = None


class EventSourceUser(_Obj):
    id: str | None = None


class EventSourceApiKey(_Obj):
    name: str | None = None
    app_id: str | None = None


class EventSource(_Obj):
    """Who caused the event (wrapped `data` shape only). channel: API, USER_PORTAL, ... (open)."""

    channel: str | None = None
    user: EventSourceUser | None = None
    api_key: EventSourceApiKey | None = None


# --- data per family ----------------------------------------------------------------------------


class EventData(_Obj):
    """Base of every typed `data`.

    `event_source` is set when the event came in the wrapped shape
    (`{"data": {...}, "event_source": {...}}`); `wrapped` holds that inner `data` while decoding
    and is always None on a value returned by `event.data`. (It is decoded as plain JSON and then
    converted, so only the rare wrapped shape pays for a second pass.)
    """

    event_source: EventSource | None = None
    wrapped: Annotated[
        Any,
        msgspec.Meta(
            description="Wrapped shape only: the real data object, beside event_source. "
            "Decoded into the same struct; always null on a decoded value."
        ),
    ] = msgspec.field(default=None, name="data")


# customer family
class CustomerData(EventData):
    """customer.created / updated / deleted."""

    customer: Customer | None = None


class CustomerConfirmedData(EventData):
    """customer.confirmed."""

    customer: Customer | None = None
    unconfirmed_customer: UnconfirmedCustomer | None = None


class CustomerReferredData(EventData):
    """customer.referred."""

    customer: Customer | None = None
    referrer: Customer | None = None
    campaign: Campaign | None = None
    voucher: Voucher | None = None
    custom_event: CustomEvent | None = None
    redemption: Redemption | None = None


# custom event family
class CustomEventData(EventData):
    """customer.custom_event."""

    event: CustomEvent | None = None
    event_schema: EventSchema | None = None
    customer: Customer | None = None
    referral: dict[str, Any] | None = None
    loyalty: dict[str, Any] | None = None


# segment family
class SegmentData(EventData):
    """customer.segment.entered / left."""

    customer: Customer | None = None
    segment: Segment | None = None


# messaging family
class MessagingSentData(EventData):
    """customer.<channel>.sent (sms, email, activecampaign, braze, mailchimp, intercom, shopify,
    klaviyo, batch)."""

    customer: Customer | None = None
    distribution: dict[str, Any] | None = None
    sent_at: str | None = None


class MessagingRecoveredData(EventData):
    """customer.<channel>.recovered."""

    customer: Customer | None = None
    distribution: dict[str, Any] | None = None
    recovered_at: str | None = None


class MessagingFailedData(EventData):
    """customer.<channel>.failed."""

    customer: Customer | None = None
    distribution: dict[str, Any] | None = None
    failed_at: str | None = None


# rewarded family
class RewardedData(EventData):
    """customer.rewarded."""

    customer: Customer | None = None
    holder: Holder | None = None
    voucher: Voucher | None = None
    campaign: Campaign | None = None
    redemption: Redemption | None = None
    reward: Reward | None = None
    referral_tier: dict[str, Any] | None = None
    balance: Balance | int | None = None
    custom_event: CustomEvent | None = None
    customer_event: dict[str, Any] | None = None


class RewardedLoyaltyPointsData(EventData):
    """customer.rewarded.loyalty_points."""

    customer: Customer | None = None
    holder: Holder | None = None
    voucher: Voucher | None = None
    campaign: Campaign | None = None
    loyalty_tier: LoyaltyTier | None = None
    earning_rule: EarningRule | None = None
    balance: Balance | int | None = None
    order: Order | None = None
    event: TriggerEvent | None = None


# gift balance family
class GiftBalanceAddedData(EventData):
    """customer.voucher.gift.balance_added (transaction type CREDITS_ADDITION)."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    voucher: Voucher | None = None
    balance: Balance | int | None = None
    transaction: Transaction | None = None


# loyalty card points family
class PointsAddedData(EventData):
    """customer.voucher.loyalty_card.points_added."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    voucher: Voucher | None = None
    balance: Balance | int | None = None
    transaction: Transaction | None = None


class PointsTransferredData(PointsAddedData):
    """customer.voucher.loyalty_card.points_transferred (POINTS_TRANSFER_IN / OUT)."""

    source_voucher: Voucher | None = None
    destination_voucher: Voucher | None = None


class PointsExpiredData(EventData):
    """customer.voucher.loyalty_card.points_expired (`points` may be a negative delta)."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    voucher: Voucher | None = None
    points: int | None = None
    buckets: list[PointsBucket] | None = None
    transaction: Transaction | None = None


# pending points family
class PendingPointsData(EventData):
    """customer.voucher.loyalty_card.pending_points.added / updated / canceled / activated
    (`balance` and `transaction` only on activated)."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    voucher: Voucher | None = None
    voucher_pending_points_balance: PendingPointsBalance | int | None = None
    order: Order | None = None
    pending_points: PendingPoints | None = None
    balance: Balance | int | None = None
    transaction: Transaction | None = None


# voucher deleted family
class VoucherDeletedData(EventData):
    """customer.voucher.deleted."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    voucher: Voucher | None = None


# publication family
class PublicationData(EventData):
    """customer.publication.succeeded / failed."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    publication: Publication | None = None
    voucher: Voucher | None = None


# validation family
class ValidationData(EventData):
    """customer.validation.succeeded / failed."""

    customer: Customer | None = None
    validation: Validation | None = None


# redemption family
class RedemptionData(EventData):
    """customer.redemption.succeeded / failed."""

    customer: Customer | None = None
    order: Order | None = None
    campaign: Campaign | None = None
    voucher: Voucher | None = None
    holder: Holder | None = None
    promotion_tier: PromotionTier | None = None
    redemption: Redemption | None = None


# redemption rollback family
class RedemptionRollbackData(RedemptionData):
    """customer.redemption.rollback.succeeded / failed."""

    redemption_rollback: RedemptionRollback | None = None


# order family
class OrderData(EventData):
    """customer.order.created / updated / paid / canceled / fulfilled / processing."""

    customer: Customer | None = None
    referrer: Customer | None = None
    order: Order | None = None
    redemption: Redemption | None = None


# reward redemption family
class RewardRedemptionData(EventData):
    """customer.reward_redemptions.created / pending / completed / rolledback."""

    customer: Customer | None = None
    holder: Holder | None = None
    voucher: Voucher | None = None
    campaign: Campaign | None = None
    reward_redemption: RewardRedemption | None = None
    reward: Reward | None = None
    reward_assignment: RewardAssignment | None = None
    source: dict[str, Any] | None = None
    balance: Balance | int | None = None


# loyalty tier family
class LoyaltyUpdatedData(EventData):
    """customer.loyalty.updated."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    loyalty: dict[str, Any] | None = None
    created_at: str | None = None


class LoyaltyTierChangedData(EventData):
    """customer.loyalty.tier.upgraded / downgraded."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    loyalty_tier_from: LoyaltyTier | None = None
    loyalty_tier_to: LoyaltyTier | None = None
    created_at: str | None = None


class LoyaltyTierData(EventData):
    """customer.loyalty.tier.prolonged / joined / left."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    loyalty_tier: LoyaltyTier | None = None
    created_at: str | None = None


class LoyaltyTierExpirationChangedData(LoyaltyTierData):
    """customer.loyalty.tier.expiration.changed."""

    expiration_date: str | None = None


# holder assignment family
class HolderAssignmentData(EventData):
    """customer.holder.assignment.created / deleted."""

    holder: Holder | None = None
    voucher: Voucher | None = None
    campaign: Campaign | None = None
    customer: Customer | None = None
