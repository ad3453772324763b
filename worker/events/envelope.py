"""The CustomerActivity envelope and its decoding rules.

Decoding the envelope reads `id`, `type`, `group_id` and `created_at` and keeps `data` as raw
bytes (`msgspec.Raw`, a zero-copy view): routing cost does not grow with payload size. The typed
`data` is decoded on first access to `event.data` and cached.

What is fatal (`decode_event` raises `EventDecodeError`; the engine dead-letters the event):
- "undecodable": no value (a tombstone), or invalid UTF-8 in a field the worker reads (the
  envelope fields here; the known fields of `data` on `event.data`). Bytes inside fields the
  worker ignores are never decoded, so they are not checked on the hot path (that would cost a
  scan of every event); `activity-worker validate` checks whole lines. Bytes that are neither
  JSON nor UTF-8 (binary junk, Latin-1) are "undecodable" too;
- "invalid_json": malformed or truncated JSON, trailing bytes, nesting deeper than the
  interpreter's recursion limit (~1,000 levels);
- "not_an_object": the top level is an array, a string, a number, true/false or null;
- "schema": `id` or `type` missing, null, empty, longer than 256 characters or not a string;
  `group_id` empty, too long or not a string; `created_at` missing or not an RFC 3339
  timestamp with a time zone (e.g. the published junk value "2024-05-13T12: 26: 06.250Z"). The
  time is what orders a customer's
  history and measures lag; the worker does not guess a repair, and the dead-letter topic keeps
  the original bytes for a replay once the producer is fixed.

Webhook deliveries are accepted too: `{"id": "whs_…", "type", "data", "event": {"id",
"type", "created_at", "group_id", "event_source", ...}}` decodes to the same `Event` as the
plain event would (id, type, group_id and created_at from `event`, `data` from the top level), so
a webhook retried for a day dedupes against the same ledger keys; `event.webhook_id` keeps the
`whs_…` id and `event.event_source` the source. Only a value that fails the plain envelope pays
for this second try.

What is tolerated: unknown `type` values (a normal event; `event.data` is then a plain dict),
unknown fields anywhere, a missing `data` (fatal only if a processor reads it: "$.data: missing
required field"), duplicate keys (the last one wins, as in `json.loads`), and ids without the
usual prefixes (`evcus_`, `v-`).

A missing or null `group_id` is a normal event (the spec makes it nullable, and older feeds and
every published 2020-2022 example lack it): `event.group_id` is then None. The idempotency keys
treat such an event as its own group (see `worker.processors.keys`).

Accessing `event.data` raises `EventDecodeError("schema", "$.data.<path>: <reason>")` when the
data does not fit its type's shape (e.g. a string where points must be an int), and
"undecodable" / "invalid_json" for bad text or nesting met there.

`created_at` is a timezone-aware `datetime`. Typed data's own timestamps (`data.created_at`,
`sent_at`, ...) stay strings: the spec is loose there and a junk value should not cost the event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from worker.errors import EventDecodeError
from worker.events.models import EventData, EventSource
from worker.events.registry import DATA_TYPES
from worker.vocabulary import ErrorClass

#: The longest `id`, `type` and `group_id` accepted (Voucherify's are 20-60 characters): a longer
#: one is a `schema` dead letter ("$.id: expected str of length <= 256"), so a producer's bug
#: cannot make log lines, headers and ledger keys unbounded.
MAX_ENVELOPE_STR = 256
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ENVELOPE_STR)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

#: The default of `raw_data` when the event has no `data` key (told apart from a JSON null by
#: identity: msgspec stores a field's default object itself).
MISSING_DATA = msgspec.Raw(b"null")
NOT_DELIVERED = msgspec.Raw(b"null")


class _LazyData:
    """`Event.data`: decodes `raw_data` on first access and stores the value in the instance
    `__dict__`, which then shadows this (non-data) descriptor: later reads are plain attribute
    reads. (functools.cached_property takes a lock per access on Python 3.11, and a generic
    wrapper costs an extra call: this is on the per-event path.)"""

    def __get__(self, obj: Event | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        value: Any
        if obj.raw_data is MISSING_DATA:
            raise EventDecodeError(ErrorClass.SCHEMA, "$.data: missing required field")
        decoder = _DECODERS.get(obj.type)
        if decoder is None:
            value, source = _decode_untyped(obj.raw_data)
            if source is not None:
                obj.__dict__["_event_source"] = source
        else:
            try:
                value = decoder.decode(obj.raw_data)
            except Exception as exc:  # only msgspec/Unicode/Recursion errors can occur
                raise _data_error(exc, "$.data", obj.raw_data) from None
            if value.wrapped is not None:
                value = _unwrap(value)
        obj.__dict__["data"] = value
        return value


class Event(msgspec.Struct, dict=True):
    """One CustomerActivity event. `raw_data` is the undecoded `data` (wire name `data`)."""

    id: NonEmptyStr
    type: NonEmptyStr
    created_at: AwareDatetime
    #: The id of the API request that caused the event (`v-…`), shared by the several events one
    #: request causes; None when the event has none (older feeds).
    group_id: NonEmptyStr | None = None
    raw_data: msgspec.Raw = msgspec.field(name="data", default=MISSING_DATA)
    #: A webhook delivery's `event` object, undecoded; `NOT_DELIVERED` on a plain event and on
    #: the event `decode_event` returns. (It marks a delivery now that a plain envelope need not
    #: carry `group_id`: a delivery's own top-level `id`/`type`/`created_at` pass as one.)
    delivered: msgspec.Raw = msgspec.field(name="event", default=NOT_DELIVERED)

    #: The typed `data` struct of this event's type (see `worker.events.models`), or a plain
    #: dict for an unknown type or one without a published shape. Decoded once, on first access.
    data: ClassVar[_LazyData] = _LazyData()

    @property
    def event_source(self) -> EventSource | None:
        """Who caused the event, when `data` came in the wrapped shape or the event in a
        webhook delivery; else None."""
        hooked: EventSource | None = self.__dict__.get("_webhook_source")
        data = self.data
        if isinstance(data, EventData) and data.event_source is not None:
            return data.event_source
        source: EventSource | None = self.__dict__.get("_event_source")
        return source if source is not None else hooked

    @property
    def webhook_id(self) -> str | None:
        """The delivery's `whs_…` id when the event came as a webhook delivery; else None."""
        hook: str | None = self.__dict__.get("_webhook_id")
        return hook


class WebhookEvent(msgspec.Struct):
    """The event inside a webhook delivery (its `data` is the delivery's)."""

    id: NonEmptyStr
    type: NonEmptyStr
    created_at: AwareDatetime
    group_id: NonEmptyStr | None = None
    event_source: EventSource | None = None


class WebhookDelivery(msgspec.Struct):
    """A webhook delivery: the event's own fields are under `event`."""

    event: WebhookEvent
    id: str | None = None
    raw_data: msgspec.Raw = msgspec.field(name="data", default=MISSING_DATA)


_envelope_decoder = msgspec.json.Decoder(Event)
_webhook_decoder = msgspec.json.Decoder(WebhookDelivery)


def check_utf8(value: bytes) -> None:
    """Raise EventDecodeError("undecodable") if any byte of `value` is not valid UTF-8.

    The hot path does not call this: msgspec checks the text it decodes (the envelope fields in
    `decode_event`, the known fields of `data` in `event.data`), and bytes inside ignored fields
    are never read. `activity-worker validate` calls it to be strict about whole lines."""
    if not isinstance(value, bytes | bytearray):
        return  # (a str or other buffer given to decode_event: nothing to check here)
    problem = _utf8_error(value)
    if problem is not None:
        raise EventDecodeError(ErrorClass.UNDECODABLE, f"$: {problem}")


def _utf8_error(value: bytes | bytearray) -> str | None:
    """"invalid UTF-8 at byte N: <reason>" when `value` is not valid UTF-8, else None."""
    if value.isascii():
        return None
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}: {exc.reason}"
    return None


def decode_event(value: bytes | None) -> Event:
    """Decode one Kafka record value into an `Event`. Raises only `EventDecodeError`."""
    if value is None:
        raise EventDecodeError(ErrorClass.UNDECODABLE, "$: message has no value (tombstone)")
    try:
        event = _envelope_decoder.decode(value)
        if event.delivered is NOT_DELIVERED:
            return event
        return _delivered_event(event)
    except msgspec.ValidationError as exc:
        hooked = _webhook_delivery(value)
        if hooked is not None:
            return hooked
        raise _validation_error(str(exc), "$") from None
    except msgspec.DecodeError as exc:
        # Bytes that are not even UTF-8 (binary junk, another encoding) say more about the
        # producer than "malformed JSON": classify them as undecodable (error path only).
        check_utf8(value)
        raise EventDecodeError(ErrorClass.INVALID_JSON, f"$: {_lower_first(str(exc))}") from None
    except UnicodeDecodeError as exc:
        raise EventDecodeError(ErrorClass.UNDECODABLE, f"$: invalid UTF-8: {exc.reason}") from None
    except RecursionError:
        raise EventDecodeError(ErrorClass.INVALID_JSON, "$: JSON nested too deeply") from None
    except TypeError:
        raise EventDecodeError(ErrorClass.UNDECODABLE, "$: value is not bytes") from None


_webhook_event_decoder = msgspec.json.Decoder(WebhookEvent)


def _delivered_event(outer: Event) -> Event:
    """The event of a delivery whose top level also passes as a plain envelope; `outer` itself
    when its `event` key holds no object (then it is a plain event with an odd extra field)."""
    try:
        inner = _webhook_event_decoder.decode(outer.delivered)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if " - at `" not in text and text.startswith("Expected `object`"):
            outer.delivered = NOT_DELIVERED
            return outer
        raise _validation_error(text, "$.event") from None
    except UnicodeDecodeError as exc:
        raise EventDecodeError(ErrorClass.UNDECODABLE,
                               f"$.event: invalid UTF-8: {exc.reason}") from None
    return _from_delivery(inner, outer.id, outer.raw_data)


def _from_delivery(inner: WebhookEvent, hook_id: str | None, raw_data: msgspec.Raw) -> Event:
    event = Event(id=inner.id, type=inner.type, group_id=inner.group_id,
                  created_at=inner.created_at, raw_data=raw_data)
    event.__dict__["_webhook_id"] = hook_id
    if inner.event_source is not None:
        event.__dict__["_webhook_source"] = inner.event_source
    return event


def _webhook_delivery(value: bytes) -> Event | None:
    """The event in a webhook delivery; None if `value` is not one (then the plain envelope's
    error stands). A delivery with a bad `event` raises its own error (`$.event.…`)."""
    try:
        hook = _webhook_decoder.decode(value)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith(_MISSING + "event`") or (
                text.startswith("Expected `object`") and text.endswith("- at `$.event`")):
            return None  # no `event` object: not a webhook delivery
        raise _validation_error(text, "$") from None
    except Exception:  # malformed further on, bad UTF-8, too deep: the first error stands
        return None
    return _from_delivery(hook.event, hook.id, hook.raw_data)


# --- typed data ---------------------------------------------------------------------------------

_data_decoders: dict[type[EventData], msgspec.json.Decoder[Any]] = {}
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}
for _type, _cls in DATA_TYPES.items():
    if _cls not in _data_decoders:
        _data_decoders[_cls] = msgspec.json.Decoder(_cls)
    _DECODERS[_type] = _data_decoders[_cls]
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def _unwrap(value: EventData) -> EventData:
    """The wrapped shape: `{"data": {...}, "event_source": {...}}` -> the inner typed value,
    carrying `event_source`."""
    source = value.event_source
    try:
        inner: EventData = msgspec.convert(value.wrapped, type(value))
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc), "$.data.data") from None
    inner.wrapped = None
    if inner.event_source is None:
        inner.event_source = source
    return inner


def _decode_untyped(raw: msgspec.Raw | bytes) -> tuple[dict[str, Any], EventSource | None]:
    value = _decode(_any_decoder, raw, "$.data")
    if not isinstance(value, dict):
        raise EventDecodeError(ErrorClass.SCHEMA,
                               f"$.data: expected object, got {_json_kind(value)}")
    inner = value.get("data")
    if "event_source" in value and isinstance(inner, dict):
        try:
            source = msgspec.convert(value["event_source"], EventSource)
        except msgspec.ValidationError as exc:
            raise _validation_error(str(exc), "$.data.event_source") from None
        return inner, source
    return value, None


def _decode(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw | bytes, path: str) -> Any:
    try:
        return decoder.decode(raw)
    except Exception as exc:
        raise _data_error(exc, path, raw) from None


def _data_error(exc: Exception, path: str, raw: msgspec.Raw | bytes) -> EventDecodeError:
    if isinstance(exc, msgspec.ValidationError):
        return _validation_error(str(exc), path)
    if isinstance(exc, msgspec.DecodeError):
        # msgspec >= 0.23 reports bad UTF-8 as a JSON error; classify it ourselves so the
        # outcome does not depend on the msgspec version (error path only).
        bad_utf8 = _utf8_error(bytes(raw))
        if bad_utf8 is not None:
            return EventDecodeError(ErrorClass.UNDECODABLE, f"{path}: {bad_utf8}")
        return EventDecodeError(ErrorClass.INVALID_JSON, f"{path}: {_lower_first(str(exc))}")
    if isinstance(exc, UnicodeDecodeError):
        return EventDecodeError(ErrorClass.UNDECODABLE, f"{path}: invalid UTF-8: {exc.reason}")
    if isinstance(exc, RecursionError):
        return EventDecodeError(ErrorClass.INVALID_JSON, f"{path}: JSON nested too deeply")
    raise exc


# --- error messages -----------------------------------------------------------------------------

_MISSING = "Object missing required field `"


def _validation_error(message: str, root: str) -> EventDecodeError:
    """Turn msgspec's "Expected `int`, got `str` - at `$.a.b`" into
    EventDecodeError(ErrorClass.SCHEMA, "<root>.a.b: expected int, got str")."""
    reason, sep, at = message.rpartition(" - at `")
    if sep:
        path = root + at.rstrip("`")[1:]
    else:
        reason, path = message, root
    if reason.startswith(_MISSING):
        path = f"{path}.{reason[len(_MISSING) :].rstrip('`')}"
        reason = "missing required field"
    if root == "$" and path == "$" and reason.startswith("Expected `object`"):
        return EventDecodeError(ErrorClass.NOT_AN_OBJECT,
                                f"$: {_lower_first(reason.replace('`', ''))}")
    # Every field is nullable, so "expected int | null" says no more than "expected int".
    reason = reason.replace("`", "").replace(" | null", "")
    return EventDecodeError(ErrorClass.SCHEMA, f"{path}: {_lower_first(reason)}")


def _lower_first(text: str) -> str:
    """Lower-case the first letter ("Expected" -> "expected") unless it starts an acronym."""
    if text[1:2].isupper():
        return text
    return text[:1].lower() + text[1:]


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list):
        return "array"
    return type(value).__name__
