"""The engine's settings (worker.app builds them from worker.settings)."""

from __future__ import annotations

from dataclasses import dataclass

from worker.engine.offsets import HELD_READ_AHEAD
from worker.engine.transactions import DEFAULT_TRANSACTION_INTERVAL_S


@dataclass(slots=True)
class EngineConfig:
    topics: list[str]
    batch_size: int = 500
    poll_timeout: float = 0.5
    commit_interval: float = 5.0
    commit_every: int = 10_000
    shutdown_timeout: float = 30.0
    revoke_timeout: float = 10.0
    drain: bool = False
    max_events: int | None = None
    dlq_max_share: float = 0.5
    dlq_window: int = 1000
    guardrail_min_events: int = 100
    lag_interval: float = 5.0
    progress_interval: float = 30.0  # seconds between "progress" log lines
    # A batch running longer than this makes the loop poll while it runs, keeping what it gets
    # for the next batch and pausing each partition once its share waits. Not shorter:
    # librdkafka drops prefetched data on pause, so pausing every batch would cost a fetch
    # round trip per batch.
    pause_after: float = 0.5
    install_signals: bool = True
    # Exactly-once mode: how long a transaction stays open for more batches (seconds; 0: one
    # transaction per batch). Longer: fewer transaction round trips, more read again on abort.
    transaction_interval: float = DEFAULT_TRANSACTION_INTERVAL_S
    # While run() runs: the cyclic GC's generation-0 threshold (None: leave the GC alone).
    # The default 700 collects several times per batch and promotes each batch's young
    # messages and events to older generations, so full collections keep walking them and the
    # ledger; 20,000 lets a batch's objects die young (measured: GC time 0.45 -> 0.02 us/event).
    gc_gen0_threshold: int | None = 20_000
    # A partition held at a parked event is read ahead of it at most this far (events), then
    # paused until it is read again (worker.engine.offsets).
    held_read_ahead: int = HELD_READ_AHEAD
