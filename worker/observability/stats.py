"""Per-batch counts that the pipeline aggregates in plain dicts and hands to the metrics module
once per batch, so the hot path makes no `labels()` call per event."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class BatchStats:
    batch_size: int = 0
    # topic -> events consumed
    consumed: Counter[str] = field(default_factory=Counter)
    # (processor, outcome) -> count; outcome in ok, duplicate, retried, dead_lettered, skipped
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    # event type -> events that matched no processor
    unmatched: Counter[str] = field(default_factory=Counter)
    # error class (undecodable, invalid_json, schema, processor_failed, unmatched, ...) -> count
    dead_letters: Counter[str] = field(default_factory=Counter)
    # processor -> seconds of each call in this batch
    processing_seconds: dict[str, list[float]] = field(default_factory=dict)
    # now minus the Kafka timestamp, per event that has one (seconds)
    latency_seconds: list[float] = field(default_factory=list)
