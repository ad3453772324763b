"""Typed `data` of every event type with a published shape, grouped by family.

Shapes follow the public Voucherify OpenAPI spec and the examples Voucherify publishes, which
disagree with the spec in places. The rule: **strict where meaning depends on a field, lenient
where it only describes.**

- Every field is optional and nullable (the spec marks everything nullable): a missing key is
  `None`, never an error.
- *Strict* (a wrong shape is a schema error that names its path, e.g.
  `$.data.loyalty_tier_to.points.from: expected int, got str`): identifiers (`id`, `*_id`,
  `code`, `source_id`) are `str`; points, amounts, balances, totals and quantities are `int`
  (Voucherify amounts are integer cents); the enum-like fields that say what happened (`type`,
  `status`, `result`, `state`, `holder_role`, `campaign_type`, ...) are open `str` (documented
  values in the docstrings; a new value decodes fine); the timestamps that time the event
  (`data.created_at`, `sent_at`/`failed_at`/`recovered_at`, a tier's `expiration_date`, a
  transaction's `created_at`, pending points' `activates_at`, a bucket's `expires_at`) are
  `str`; and the sub-objects that carry those (customer, campaign, voucher, loyalty tier,
  order, balance, transaction, ...) are typed structs.
- *Lenient* (`Json`: any JSON value kept as decoded, never an error): what only describes —
  names, e-mails, descriptions, addresses, metadata, summaries, a customer's loyalty and
  referrals, discounts, flags such as `active`, the `object` tag, sub-objects' own record
  timestamps (`created_at`/`updated_at` of a campaign, a voucher, ...), free-form details and
  parameters. The published `customer.updated` example has `customer.referrals.campaigns` as a
  list of strings where the schema says objects: that must not cost the event. A processor that
  reads such a field decides what to do with its shape (`worker.processors.data` helps).
- Unknown fields are ignored (new Voucherify releases add fields).
- Sub-objects that many families share are defined once here.

Every data struct derives from `EventData`, which also accepts the *wrapped* shape
`{"data": {...}, "event_source": {...}}`: see `worker.events.envelope`.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

#: A field that only describes (see the module docstring): any JSON value is kept as decoded
#: (dict, list, str, number, bool), never a schema error. Read it with
#: `worker.processors.data` (`get`, `text`, `integer`), which tolerate every shape.
Json = Annotated[Any, msgspec.Meta(description="Descriptive: any JSON value, kept as is.")]


class _Obj(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """Base of every sub-object: keyword-only, defaults omitted when encoding."""


# --- shared sub-objects -------------------------------------------------------------------------










class Customer(_Obj):
    """A customer (`cust_…`). Events carry a full or a trimmed copy; all fields optional."""

    id: str | None = None
    source_id: str | None = None
    name: Json = None
    email: Json = None
    phone: Json = None
    description: Json = None
    address: Json = None
    birthdate: Json = None
    birthday: Json = None
    metadata: Json = None
    summary: Json = None
    loyalty: Json = None
    referrals: Json = None
    system_metadata: Json = None
    created_at: Json = None
    updated_at: Json = None
    object: Json = None


class UnconfirmedCustomer(_Obj):
    """The pre-confirmation customer record (`ucust_…`)."""

    id: str | None = None
    source_id: str | None = None
    name: Json = None
    email: Json = None
    metadata: Json = None
    created_at: Json = None
    object: Json = None


class Campaign(_Obj):
    """A campaign (`camp_…`). campaign_type: LOYALTY_PROGRAM, DISCOUNT_COUPONS, GIFT_VOUCHERS,
    REFERRAL_PROGRAM, PROMOTION, ... (open); type: AUTO_UPDATE / STATIC (open)."""

    id: str | None = None
    name: Json = None
    description: Json = None
    campaign_type: str | None = None
    type: str | None = None
    category: Json = None
    category_id: str | None = None
    active: Json = None
    start_date: Json = None
    expiration_date: Json = None
    metadata: Json = None
    created_at: Json = None
    updated_at: Json = None
    object: Json = None


class PointsRange(_Obj):
    """A tier's points range; `from` is a Python keyword, hence `from_` (wire name `from`)."""

    from_: int | None = msgspec.field(default=None, name="from")
    to: int | None = None


class LoyaltyCard(_Obj):
    points: int | None = None
    balance: int | None = None
    next_expiration_date: Json = None
    next_expiration_points: int | None = None
    pending_points: int | None = None
    expired_points: int | None = None
    subtracted_points: int | None = None


class Gift(_Obj):
    amount: int | None = None
    balance: int | None = None
    subtracted_amount: int | None = None
    effect: Json = None



class Voucher(_Obj):
    """A voucher (`v_…`). type: DISCOUNT_VOUCHER / LOYALTY_CARD / GIFT_VOUCHER (open)."""

    id: str | None = None
    code: str | None = None
    type: str | None = None
    campaign: str | None = None
    campaign_id: str | None = None
    category: Json = None
    category_id: str | None = None
    holder_id: str | None = None
    discount: Json = None
    gift: Gift | None = None
    loyalty_card: LoyaltyCard | None = None
    start_date: Json = None
    expiration_date: Json = None
    active: Json = None
    is_referral_code: Json = None
    metadata: Json = None
    created_at: Json = None
    updated_at: Json = None
    object: Json = None


class LoyaltyTier(_Obj):
    """A loyalty tier (`ltr_…`)."""

    id: str | None = None
    name: Json = None
    campaign_id: str | None = None
    points: PointsRange | None = None
    metadata: Json = None
    created_at: Json = None
    updated_at: Json = None
    object: Json = None


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
    product: Json = None
    sku: Json = None
    metadata: Json = None
    object: Json = None


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
    metadata: Json = None
    created_at: Json = None
    updated_at: Json = None
    object: Json = None


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
    object: Json = None


class Transaction(_Obj):
    """A voucher transaction (`vtx_…`). type: POINTS_ACCRUAL, POINTS_ADDITION, POINTS_TRANSFER_IN,
    POINTS_TRANSFER_OUT, POINTS_EXPIRATION, CREDITS_ADDITION, ... (open: examples disagree)."""

    id: str | None = None
    source_id: str | None = None
    voucher_id: str | None = None
    campaign_id: str | None = None
    source: Json = None
    reason: Json = None
    type: str | None = None
    details: Json = None
    related_transaction_id: str | None = None
    created_at: str | None = None


class Channel(_Obj):
    channel_id: str | None = None
    channel_type: str | None = None


class Redemption(_Obj):
    """A redemption (`r_…`). result: SUCCESS / FAILURE; status: SUCCEEDED, FAILED, ROLLED_BACK
    (open)."""

    id: str | None = None
    object: Json = None
    date: Json = None
    customer_id: str | None = None
    tracking_id: str | None = None
    metadata: Json = None
    amount: int | None = None
    redemption: str | None = None
    result: str | None = None
    status: str | None = None
    failure_code: str | None = None
    failure_message: Json = None
    reason: Json = None
    channel: Channel | None = None
    related_object_type: Json = None
    related_object_id: str | None = None
    voucher_id: str | None = None
    order_id: str | None = None
    created_at: Json = None


class RedemptionRollback(_Obj):
    """A redemption rollback (`rr_…`)."""

    id: str | None = None
    object: Json = None
    date: Json = None
    customer_id: str | None = None
    tracking_id: str | None = None
    metadata: Json = None
    amount: int | None = None
    redemption: str | None = None
    reason: Json = None
    result: str | None = None
    status: str | None = None
    failure_code: str | None = None
    failure_message: Json = None
    channel: Channel | None = None
    created_at: Json = None


class Holder(_Obj):
    """A holder: either a holder assignment (holder_role OWNER / REFERRER / REFEREE, open) or the
    customer who holds a voucher (then it looks like a trimmed customer)."""

    id: str | None = None
    redeemable_id: str | None = None
    redeemable_object: Json = None
    campaign_id: str | None = None
    customer_id: str | None = None
    holder_role: str | None = None
    source_id: str | None = None
    name: Json = None
    email: Json = None
    metadata: Json = None
    created_at: Json = None
    object: Json = None


class Reward(_Obj):
    """A reward (`rew_…`). type: CAMPAIGN / COIN / MATERIAL (open)."""

    id: str | None = None
    name: Json = None
    type: str | None = None
    parameters: Json = None
    metadata: Json = None
    stock: int | None = None
    redeemed: int | None = None
    created_at: Json = None
    object: Json = None


class RewardAssignment(_Obj):
    id: str | None = None
    reward_id: str | None = None
    related_object_id: str | None = None
    related_object_type: Json = None
    parameters: Json = None
    created_at: Json = None
    object: Json = None


class RewardRedemption(_Obj):
    """A reward redemption (`rewr_…`). state: PENDING, COMPLETED, ROLLED_BACK, ... (open)."""

    id: str | None = None
    state: str | None = None
    reward_id: str | None = None
    reward_assignment_id: str | None = None
    voucher_id: str | None = None
    customer_id: str | None = None
    holder_id: str | None = None
    created_at: Json = None
    updated_at: Json = None
    object: Json = None


class Segment(_Obj):
    id: str | None = None
    name: Json = None
    object: Json = None


class Publication(_Obj):
    """A publication (`pub_…`). result: SUCCESS / FAILURE (open)."""

    id: str | None = None
    channel: str | None = None
    source_id: str | None = None
    customer_id: str | None = None
    vouchers: Json = None
    vouchers_id: list[str] | None = None
    result: str | None = None
    failure_code: str | None = None
    failure_message: Json = None
    metadata: Json = None
    created_at: Json = None
    object: Json = None


class Validation(_Obj):
    """A validation (`valid_…`). status: VALID / INVALID (open)."""

    id: str | None = None
    session_id: str | None = None
    status: str | None = None
    customer_id: str | None = None
    tracking_id: str | None = None
    redeemables: Json = None
    inapplicable_redeemables: Json = None
    skipped_redeemables: Json = None
    order: Order | None = None
    created_at: Json = None
    object: Json = None


class PromotionTier(_Obj):
    id: str | None = None
    name: Json = None
    banner: Json = None
    campaign: dict[str, Any] | None = None
    metadata: Json = None
    object: Json = None


class CustomerRef(_Obj):
    id: str | None = None
    source_id: str | None = None
    object: Json = None


class CustomEvent(_Obj):
    """A custom event (`event_…`) as sent by the integrator."""

    id: str | None = None
    type: str | None = None
    customer: CustomerRef | None = None
    referral: Json = None
    loyalty: Json = None
    metadata: Json = None
    created_at: Json = None
    object: Json = None


class EventSchema(_Obj):
    id: str | None = None
    name: Json = None


class TriggerEvent(_Obj):
    """The event that triggered a loyalty points reward (e.g. an order paid)."""

    id: str | None = None
    type: str | None = None
    category: Json = None
    entity_id: str | None = None
    group_id: str | None = None
    created_at: Json = None


class EarningRule(_Obj):
    id: str | None = None
    source: Json = None
    loyalty: Json = None
    metadata: Json = None
    created_at: Json = None
    object: Json = None


class PendingPoints(_Obj):
    """Pending points (`lopp_…`) waiting for `activates_at`."""

    id: str | None = None
    voucher_id: str | None = None
    campaign_id: str | None = None
    customer_id: str | None = None
    order_id: str | None = None
    points: int | None = None
    activates_at: str | None = None
    details: Json = None
    created_at: str | None = None
    updated_at: Json = None
    object: Json = None


class PendingPointsBalance(_Obj):
    total: int | None = None
    points: int | None = None
    pending_points: int | None = None
    object: Json = None


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
    object: Json = None


class EventSourceUser(_Obj):
    id: str | None = None


class EventSourceApiKey(_Obj):
    name: Json = None
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
    referral: Json = None
    loyalty: Json = None


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
    distribution: Json = None
    sent_at: str | None = None


class MessagingRecoveredData(EventData):
    """customer.<channel>.recovered."""

    customer: Customer | None = None
    distribution: Json = None
    recovered_at: str | None = None


class MessagingFailedData(EventData):
    """customer.<channel>.failed."""

    customer: Customer | None = None
    distribution: Json = None
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
    referral_tier: Json = None
    balance: Balance | int | None = None
    custom_event: CustomEvent | None = None
    customer_event: Json = None


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
    source: Json = None
    balance: Balance | int | None = None


# loyalty tier family
class LoyaltyUpdatedData(EventData):
    """customer.loyalty.updated."""

    customer: Customer | None = None
    campaign: Campaign | None = None
    loyalty: Json = None
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
