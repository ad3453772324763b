"""The event model: the CustomerActivity envelope and its typed `data`."""

from worker.events.envelope import Event, decode_event
from worker.events.types import KNOWN_TYPES, EventType, family_of

__all__ = ["KNOWN_TYPES", "Event", "EventType", "decode_event", "family_of"]
