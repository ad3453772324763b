"""The CustomerActivity envelope. (Minimal first version; the event-model issue completes it.)

`data` stays raw (`msgspec.Raw`) until a processor reads `event.data`, so routing cost does not
grow with payload size.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from worker.errors import EventDecodeError


class Event(msgspec.Struct, dict=True):
    id: str
    type: str
    group_id: str
    created_at: str
    raw_data: msgspec.Raw = msgspec.field(name="data", default=msgspec.Raw(b"null"))

    @functools.cached_property
    def data(self) -> Any:
        return msgspec.json.decode(self.raw_data)


_decoder = msgspec.json.Decoder(Event)


def decode_event(value: bytes | None) -> Event:
    if value is None:
        raise EventDecodeError("undecodable", "$: message has no value (tombstone)")
    try:
        return _decoder.decode(value)
    except msgspec.ValidationError as exc:
        raise EventDecodeError("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise EventDecodeError("invalid_json", str(exc)) from None
