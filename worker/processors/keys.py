"""Idempotency keys: the one place that spells them (the ledger stores them, so a change here
is a change of every stored key).

- per event (the default): `<processor>:<group_id>:<event id>`: a redelivered event is a
  duplicate, while the distinct events one request causes (same `group_id`) are not;
- per group (`once_per="group"`): `<processor>:<group_id>`: one effect per API request;
- custom (`key=`): `<processor>:<what the function returns>`.

An event without `group_id` (older feeds; the spec makes it nullable) is its own group: both
built-in scopes give `<processor>::<event id>`, so a redelivery is still a duplicate. A custom
key function sees `event.group_id is None` and decides; if it raises, that processor alone
dead-letters the event (`key_failed`).
"""

from __future__ import annotations

from worker.events import Event


def event_key(processor: str, event: Event) -> str:
    group = event.group_id
    return f"{processor}:{group}:{event.id}" if group is not None else f"{processor}::{event.id}"


def group_key(processor: str, event: Event) -> str:
    group = event.group_id
    return f"{processor}:{group}" if group is not None else f"{processor}::{event.id}"


def custom_key(processor: str, value: str) -> str:
    return f"{processor}:{value}"
