"""The event model: the CustomerActivity envelope and its typed `data`."""

from worker.events.envelope import Event, decode_event

__all__ = ["Event", "decode_event"]
