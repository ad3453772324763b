"""The 74 known CustomerActivity `type` values in seed order, for display and the typo warning.

Not used for validation: an unknown type is normal (new ones appear over time).
"""

from __future__ import annotations

from worker.events import EventType

KNOWN_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
