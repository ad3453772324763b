"""The event model: the CustomerActivity envelope and its typed `data`.

- `decode_event(bytes) -> Event` reads the envelope only and keeps `data` raw; `event.data` is
  the typed struct of the event's type (worker.events.models), decoded once on first access;
  `event.event_source` is set for the wrapped data shape. Errors: EventDecodeError only (see
  worker.events.envelope for what is fatal and what is tolerated).
- `EventType`, `KNOWN_TYPES`, `family_of`: the 74 known types (worker.events.types).
- `devtools.generate`: realistic events for demos, benchmarks and tests.
- `worker.events.export`: the JSON Schema files in schemas/.
"""

from worker.events.envelope import Event, check_utf8, decode_event
from worker.events.models import EventData, EventSource
from worker.events.registry import DATA_TYPES, data_type_of
from worker.events.types import FAMILIES, KNOWN_TYPES, EventType, family_of

__all__ = [
    "DATA_TYPES",
    "FAMILIES",
    "KNOWN_TYPES",
    "Event",
    "EventData",
    "EventSource",
    "EventType",
    "check_utf8",
    "data_type_of",
    "decode_event",
    "family_of",
]
