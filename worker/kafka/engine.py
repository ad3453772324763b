"""The consumer engine: the Kafka half of the worker.

One loop on the main thread owns the confluent_kafka Consumer; a single handler thread runs the
`BatchHandler` (worker.pipeline.Pipeline) on one batch at a time. Guarantees:

- An offset is stored only after the handler returned `completed=True` for its batch and every
  dead letter of the batch was acknowledged by the broker; then `last + 1` per partition.
- Commits: asynchronously every `commit_interval` seconds or `commit_every` events; synchronously
  for revoked partitions inside the revoke callback, and at shutdown. Never for lost partitions.
- While a batch runs longer than `pause_after` (0.5 s), every assigned partition is paused and
  the main thread keeps polling (rebalance callbacks are served, `max.poll.interval.ms` cannot
  expire).
- On revoke of a partition held by the in-flight batch: wait up to `revoke_timeout` for it, else
  cancel it (the handler rolls back), then store + commit what finished, then let go. No event of
  a revoked partition is handed to the handler after the revoke callback returns.
- A cancelled batch stores nothing; its partitions that are still ours are sought back to the
  batch's first offsets, so the events are consumed again.
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

import structlog
from confluent_kafka import KafkaException

from worker.errors import FatalProcessingError, WorkerError
from worker.kafka.admin import committed_offsets, topic_partitions, watermarks
from worker.kafka.clients import new_consumer
from worker.kafka.deadletters import DeadLetterPolicy, Guardrail
from worker.kafka.diagnose import classify
from worker.kafka.dlq import DeadLetterProducer
from worker.kafka.offsets import OffsetTracker
from worker.kafka.secrets import redact, scrub, secret_values
from worker.types import BatchHandler, BatchResult, Message, TopicPartition

log = structlog.get_logger("worker.engine")

TP = tuple[str, int]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_SETTINGS = 2
EXIT_FATAL_PROCESSING = 3
EXIT_GUARDRAIL = 4
EXIT_SHUTDOWN_TIMEOUT = 5


class EngineMetrics(Protocol):
    """The part of worker.observability.metrics.WorkerMetrics the engine calls."""

    def partitions_assigned(self, tps: Sequence[TopicPartition]) -> None: ...
    def partitions_revoked(self, tps: Sequence[TopicPartition]) -> None: ...
    def partitions_lost(self, tps: Sequence[TopicPartition]) -> None: ...
    def record_lag(self, tp: TopicPartition, lag_offsets: int, lag_seconds: float) -> None: ...
    def record_commit(self, tp: TopicPartition, offset: int) -> None: ...
    def record_librdkafka_stats(self, json_str: str) -> None: ...
    def guardrail_tripped(self) -> None: ...
    def dlq_write(self, ok: bool, shrunk: int = 0) -> None: ...


class EngineHealth(Protocol):
    """The part of worker.observability.health.HealthState the engine calls."""

    def heartbeat(self) -> None: ...
    def set_connected(self, connected: bool) -> None: ...
    def set_assigned(self, n: int) -> None: ...
    def record_commit_advance(self) -> None: ...
    def record_traffic(self) -> None: ...
    def set_dlq_writable(self, ok: bool) -> None: ...


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
    guardrail_share: float = 0.5
    guardrail_window: int = 1000
    guardrail_min_events: int = 100
    lag_interval: float = 5.0
    progress_interval: float = 30.0  # seconds between "progress" log lines
    # A batch running longer than this pauses the assigned partitions and polls while it runs.
    # Not shorter: librdkafka drops prefetched data on pause, so pausing every batch would
    # cost a fetch round trip per batch.
    pause_after: float = 0.5
    stats_interval_ms: int = 15_000
    install_signals: bool = True
    # While run() runs: the cyclic GC's generation-0 threshold (None: leave the GC alone).
    # The default 700 collects several times per batch and promotes each batch's young
    # messages and events to older generations, so full collections keep walking them and the
    # ledger; 20,000 lets a batch's objects die young (measured: GC time 0.45 -> 0.02 us/event).
    gc_gen0_threshold: int | None = 20_000


class _Batch:
    __slots__ = ("cancel", "clean", "done", "error", "finalized", "first", "last", "last_ts",
                 "messages", "result")

    def __init__(self, messages: list[Any], assigned: Collection[TP] | None = None) -> None:
        """One pass over `messages` for each partition's first and last offset. With
        `assigned`, the same pass checks that no message is an error event and that every
        partition is assigned, and sets `clean` to False (and stops) otherwise."""
        self.messages = messages
        self.clean = True
        self.first: dict[TP, int] = {}
        self.last: dict[TP, int] = {}
        self.last_ts: dict[TP, int] = {}
        # A partition's messages come in runs, so the dicts are touched per run.
        first, last, last_ts = self.first, self.last, self.last_ts
        prev: Any = None
        prev_t: str | None = None
        prev_p = -1
        for m in messages:
            if assigned is not None and m.error() is not None:
                self.clean = False
                return
            t = m.topic()
            p = m.partition()
            if p != prev_p or t != prev_t:
                if assigned is not None and (t, p) not in assigned:
                    self.clean = False
                    return
                if prev is not None:
                    last[(prev_t, prev_p)] = prev.offset()  # type: ignore[index]
                    last_ts[(prev_t, prev_p)] = prev.timestamp()[1]  # type: ignore[index]
                first.setdefault((t, p), m.offset())
                prev_t, prev_p = t, p
            prev = m
        if prev is not None:
            last[(prev_t, prev_p)] = prev.offset()  # type: ignore[index]
            last_ts[(prev_t, prev_p)] = prev.timestamp()[1]  # type: ignore[index]
        self.done = threading.Event()
        self.cancel = threading.Event()
        self.result: BatchResult | None = None
        self.error: BaseException | None = None
        self.finalized = False


class Engine:
    """Runs the consume → handle → dead-letter → store → commit loop until stopped."""

    def __init__(self, consumer_config: Mapping[str, Any], handler: BatchHandler,
                 config: EngineConfig, *, dlq: DeadLetterProducer | None = None,
                 metrics: EngineMetrics | None = None, health: EngineHealth | None = None,
                 summary: Callable[[], dict[str, Any]] | None = None) -> None:
        """`summary` adds fields to the exit summary line (e.g. the pipeline's outcome
        totals)."""
        self.config = config
        self._summary_extra = summary
        self._handler = handler
        self._metrics = metrics
        self._health = health
        cfg = dict(consumer_config)
        self._incremental = (cfg.get("group.protocol") == "consumer" or "cooperative-sticky"
                             in str(cfg.get("partition.assignment.strategy", "")))
        cfg["on_commit"] = self._on_commit
        cfg["error_cb"] = self._on_error
        if metrics is not None:
            cfg["stats_cb"] = metrics.record_librdkafka_stats
            cfg.setdefault("statistics.interval.ms", config.stats_interval_ms)
        self._consumer_config = cfg
        self._consumer: Any = None
        self._assigned: set[TP] = set()
        self._paused: set[TP] = set()
        self._pending: list[Any] = []
        self._offsets = OffsetTracker(config)
        self._inflight: _Batch | None = None
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stop_reason = ""
        self._stop_deadline: float | None = None
        self._signals = 0
        self._timer: threading.Timer | None = None
        self._exit_code = EXIT_OK
        self._fatal_message: str | None = None
        self._connected = False  # until an assignment or a message proves it
        # Once the group gave us an assignment, the credentials and certificates worked.
        self._ever_assigned = False
        self._secrets = secret_values(cfg)
        self._next_auth_log = 0.0
        self._dead_letters = DeadLetterPolicy(
            dlq, Guardrail(config.guardrail_share, config.guardrail_window,
                           config.guardrail_min_events), metrics=metrics, health=health)
        self._drain_targets: dict[TP, tuple[int, int]] = {}
        self._next_drain_check = 0.0
        self._next_lag = 0.0
        self._next_probe = 0.0
        self._next_progress = time.monotonic() + self.config.progress_interval
        self._progress_mark = (time.monotonic(), 0)
        # Counters for the summary line.
        self.events = 0
        self.dead_lettered_events = 0
        self.dead_letters = 0
        self.cancelled_batches = 0
        self.commits = 0

    # -- public ------------------------------------------------------------------------------
    def stop(self, reason: str = "requested") -> None:
        """Ask the loop to stop gracefully (thread-safe): finish the batch, commit, close."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop_deadline = time.monotonic() + self.config.shutdown_timeout
            self._stop.set()

    def run(self) -> int:
        """Consume until stopped, drained, --max-events reached or a fatal error; return the
        process exit code."""
        started = time.monotonic()
        self._consumer = new_consumer(self._consumer_config)  # ConfigError: bad settings
        gc_restore = _tune_gc(self.config.gc_gen0_threshold)
        old_handlers = self._install_signals() if self.config.install_signals else {}
        log.info("consumer starting", topics=self.config.topics,
                 config=redact({k: v for k, v in self._consumer_config.items()
                                if not callable(v)}))
        self._thread = threading.Thread(target=self._handler_loop, name="batch-handler",
                                        daemon=True)
        self._thread.start()
        try:
            if self.config.drain:
                parts = topic_partitions(self._consumer, self.config.topics)
                self._drain_targets = watermarks(self._consumer, parts)
                log.info("drain mode: consuming up to the current end offsets",
                         partitions=len(parts),
                         events=sum(h - lo for lo, h in self._drain_targets.values()))
            self._consumer.subscribe(self.config.topics, on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_lost)
            self._loop()
        except WorkerError as exc:
            self._fail(EXIT_ERROR, str(exc))
        except Exception as exc:
            self._fail(EXIT_ERROR, f"{type(exc).__name__}: {exc}")
            log.exception("engine crashed")
        finally:
            self._shutdown()
            self._restore_signals(old_handlers)
            if self._timer is not None:
                self._timer.cancel()
            gc_restore()
        self._summary(time.monotonic() - started)
        return self._exit_code

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        cfg = self.config
        consumer = self._consumer
        health = self._health
        while not self._stop.is_set():
            if health is not None:
                health.heartbeat()
            if cfg.max_events is not None and self.events >= cfg.max_events:
                self.stop("--max-events reached")
                break
            now = time.monotonic()
            if cfg.drain and now >= self._next_drain_check and self._drained(now):
                self.stop("drained")
                break
            n = cfg.batch_size
            if cfg.max_events is not None:
                n = min(n, cfg.max_events - self.events)
            if self._pending:
                msgs = self._pending[:n]
                del self._pending[:n]
            else:
                msgs = consumer.consume(n, cfg.poll_timeout)
            if msgs:
                batch = self._batch_of(msgs)
                if batch is not None:
                    self._run_batch(batch)
            self._maybe_commit()
            if not self._connected and now >= self._next_probe:
                self._probe_connection(now)
            if now >= self._next_lag:
                self._next_lag = now + cfg.lag_interval
                self._record_lag()
                self._dead_letters.serve()  # its log lines; nothing else queues up while idle
            if now >= self._next_progress:
                self._log_progress(now)

    def _probe_connection(self, now: float) -> None:
        """A member without partitions sees no assignment and no message, yet it is connected
        once it has joined the group and a broker answers; check that every 2 s while it is
        not known to be (at start, and after all brokers went down)."""
        self._next_probe = now + 2.0
        if self._health is None or not self._consumer.memberid():
            return
        try:
            self._consumer.list_topics(self.config.topics[0], timeout=0.5)
        except KafkaException:
            return
        self._connected = True
        self._health.set_connected(True)

    def _batch_of(self, msgs: list[Any]) -> _Batch | None:
        """The batch to run: `msgs` less error events (handled) and messages of partitions no
        longer ours; None if nothing is left."""
        batch = _Batch(msgs, self._assigned)
        if not batch.clean:  # the rare path: a second pass to filter, then a clean batch
            kept = [x for x in msgs if self._keep(x)]
            return _Batch(kept) if kept else None
        if self._health is not None and not self._connected:
            self._connected = True
            self._health.set_connected(True)
        return batch

    def _keep(self, m: Any) -> bool:
        err = m.error()
        if err is not None:
            if err.fatal():
                self._fail(EXIT_ERROR, f"fatal Kafka error: {err}")
            elif err.code() != err._PARTITION_EOF:
                log.warning("consumer error", error=scrub(str(err), self._secrets))
            return False
        return (m.topic(), m.partition()) in self._assigned

    def _run_batch(self, batch: _Batch) -> None:
        if self._health is not None:
            self._health.record_traffic()  # arms /healthz's "commits stopped advancing" check
        self._inflight = batch
        self._queue.put(batch)
        if not batch.done.wait(self.config.pause_after):
            self._pause_assigned()
            while not batch.done.wait(0.02):
                self._serve_while_busy(batch)
        if not batch.finalized:
            self._finish(batch)
        self._inflight = None
        self._resume_paused()
        self._apply_seek_back()

    def _serve_while_busy(self, batch: _Batch) -> None:
        """Keep the consumer alive while the handler works: callbacks, pending messages, the
        shutdown bound."""
        consumer = self._consumer
        for _ in range(1000):
            m = consumer.poll(0)
            if m is None:
                break
            if self._keep(m):
                # Fetched before the pause took effect: keep it for the next batch, in order.
                self._pending.append(m)
        if self._health is not None:
            self._health.heartbeat()
        if self._stop.is_set() and not batch.cancel.is_set() and self._stop_deadline:
            # Leave a reserve of the shutdown bound for commit and close.
            reserve = min(5.0, self.config.shutdown_timeout / 3)
            if time.monotonic() >= self._stop_deadline - reserve:
                log.warning("shutdown bound reached; cancelling the in-flight batch",
                            batch_size=len(batch.messages))
                batch.cancel.set()

    def _handler_loop(self) -> None:
        handle = self._handler.handle
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                batch.result = handle(batch.messages, batch.cancel.is_set)
            except BaseException as exc:
                batch.error = exc
            finally:
                batch.done.set()

    def _finish(self, batch: _Batch) -> None:
        """The handler returned: dead letters, then offsets (or seek back on cancel)."""
        batch.finalized = True
        if batch.error is not None:
            err = batch.error
            if isinstance(err, FatalProcessingError):
                self._fail(EXIT_FATAL_PROCESSING, str(err))
            else:
                self._fail(EXIT_ERROR, f"the batch handler raised {type(err).__name__}: {err}")
            return
        result = batch.result
        assert result is not None
        if not result.completed:
            self.cancelled_batches += 1
            rewind = self._offsets.cancelled(batch.first, self._assigned)
            if rewind:
                self._pending = [m for m in self._pending
                                 if (m.topic(), m.partition()) not in rewind]
            return
        letters = result.dead_letters
        dead_events = len({id(d.source) for d in letters}) if letters else 0
        tripped = self._dead_letters.check(len(batch.messages), dead_events)
        if tripped is not None:
            self._fail(EXIT_GUARDRAIL, tripped)
            return
        if letters:
            if not self._dead_letters.can_write:
                self._fail(EXIT_ERROR, "events must be dead-lettered but no DLQ producer is "
                                       "configured; set --dlq-topic")
                return
            if not self._dead_letters.write(letters, lambda delay: self._wait_for_dlq(batch,
                                                                                   delay)):
                log.warning("dead letters not written; their batch is not committed and "
                            "comes back", letters=len(letters))
                return  # stopping, or its partitions are gone: nothing of it is stored
            self.dead_letters += len(letters)
            self.dead_lettered_events += dead_events
        self._store(batch)

    def _wait_for_dlq(self, batch: _Batch, delay: float) -> bool:
        """While dead letters cannot be written: pause, keep the consumer served for `delay`
        seconds; False once the worker stops or the batch's partitions are gone."""
        self._pause_assigned()
        until = time.monotonic() + delay
        while time.monotonic() < until and not self._stop.is_set():
            self._serve_while_busy(batch)
            time.sleep(0.05)
        return not self._stop.is_set() and bool(batch.last.keys() & self._assigned)

    def _store(self, batch: _Batch) -> None:
        from confluent_kafka import TopicPartition as KTP

        offsets = self._offsets.finished(batch.last, batch.last_ts, len(batch.messages),
                                         self._assigned)
        if offsets:
            self._consumer.store_offsets(offsets=[KTP(t, p, o) for (t, p), o in offsets])
        self.events += len(batch.messages)

    # -- pause / resume / seek ---------------------------------------------------------------
    def _pause_assigned(self) -> None:
        from confluent_kafka import TopicPartition as KTP

        todo = self._assigned - self._paused
        if todo:
            self._consumer.pause([KTP(t, p) for t, p in todo])
            self._paused |= todo

    def _resume_paused(self) -> None:
        from confluent_kafka import TopicPartition as KTP

        todo = self._paused & self._assigned
        self._paused.clear()
        if todo:
            self._consumer.resume([KTP(t, p) for t, p in todo])

    def _apply_seek_back(self) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KTP

        for (t, p), off in self._offsets.seeks().items():
            if (t, p) not in self._assigned:
                continue
            try:
                self._consumer.seek(KTP(t, p, off))
            except KafkaException as exc:
                # Without the seek the events of the cancelled batch would be skipped: stop, so
                # the restart resumes from the last commit instead.
                self._fail(EXIT_ERROR, f"could not rewind {t}[{p}] to {off} after a cancelled "
                                       f"batch ({exc}); restart the worker")

    # -- commits -----------------------------------------------------------------------------
    def _maybe_commit(self) -> None:
        if self._offsets.commit_due():
            self._commit(asynchronous=True)

    def _commit(self, *, asynchronous: bool, partitions: Sequence[TP] | None = None) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka import TopicPartition as KTP

        try:
            if partitions is None:
                if not self._offsets.uncommitted:
                    return
                result = self._consumer.commit(asynchronous=asynchronous)
                self._offsets.committing_all()
            else:
                offsets = self._offsets.to_commit(partitions)
                if not offsets:
                    return
                result = self._consumer.commit(
                    offsets=[KTP(t, p, o) for (t, p), o in offsets], asynchronous=False)
                self._offsets.committed_partitions()
            if not asynchronous:
                self._on_commit(None, result)
            self.commits += 1
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() == KafkaError._NO_OFFSET:
                return
            log.error("commit failed", error=str(exc), asynchronous=asynchronous)
            if not asynchronous:
                raise

    def _on_commit(self, err: Any, partitions: Any) -> None:
        if err is not None:
            if err.code() != err._NO_OFFSET:
                log.warning("offset commit failed; will retry on the next commit", error=str(err))
            return
        advanced = False
        for tp in partitions or ():
            if tp.error is not None or tp.offset < 0:
                continue
            if self._offsets.confirmed((tp.topic, tp.partition), tp.offset):
                advanced = True
                if self._metrics is not None:
                    self._metrics.record_commit(TopicPartition(tp.topic, tp.partition),
                                                tp.offset)
        if advanced and self._health is not None:
            self._health.record_commit_advance()

    # -- rebalance callbacks (run on the main thread, inside consume/poll/close) -------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
            self._assigned.clear()
        self._assigned.update(tps)
        self._ever_assigned = True
        if self._inflight is not None and self._paused and tps:
            # A batch is running: new partitions wait too, so nothing piles up in memory.
            consumer.pause(partitions)
            self._paused.update(tps)
        elif tps:
            # librdkafka keeps a partition's pause flag across unassign/assign: clear it.
            consumer.resume(partitions)
        if self._health is not None and not self._connected:
            self._connected = True
            self._health.set_connected(True)
        log.info("partitions assigned", partitions=[f"{t}[{p}]" for t, p in tps])
        if self._metrics is not None:
            self._metrics.partitions_assigned([TopicPartition(t, p) for t, p in tps])
        if self._health is not None:
            self._health.set_assigned(len(self._assigned))

    def _settle_inflight(self, gone: set[TP], *, lost: bool) -> None:
        """Make sure the in-flight batch no longer touches `gone` partitions: wait for it (up to
        revoke_timeout, not at all when lost), else cancel it and wait for the rollback."""
        batch = self._inflight
        if batch is None or batch.finalized or not (gone & batch.last.keys()):
            return
        if lost or not batch.done.wait(self.config.revoke_timeout):
            batch.cancel.set()
            if not batch.done.wait(max(5.0, self.config.revoke_timeout)):
                # The handler ignores cancellation: letting go now could process an event of a
                # partition another worker owns. Exit at once; the restart resumes from commits.
                log.critical("the batch handler did not stop after cancellation during a "
                             "rebalance; exiting at once")
                _hard_exit(EXIT_ERROR)
        if lost:
            # Nothing of a lost partition may be stored; drop them before finishing.
            for tp in gone:
                self._assigned.discard(tp)
        self._finish(batch)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._settle_inflight(gone, lost=False)
        self._pending = [m for m in self._pending if (m.topic(), m.partition()) not in gone]
        try:
            self._commit(asynchronous=False, partitions=sorted(gone & self._assigned))
        except Exception as exc:
            log.error("commit on revoke failed; the next owner re-processes from the last "
                      "commit", error=str(exc))
        self._drop(gone)
        log.info("partitions revoked", partitions=[f"{t}[{p}]" for t, p in sorted(gone)])
        if self._metrics is not None:
            self._metrics.partitions_revoked([TopicPartition(t, p) for t, p in sorted(gone)])

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._settle_inflight(gone, lost=True)
        self._pending = [m for m in self._pending if (m.topic(), m.partition()) not in gone]
        self._drop(gone)
        log.warning("partitions lost; nothing committed for them",
                    partitions=[f"{t}[{p}]" for t, p in sorted(gone)])
        if self._metrics is not None:
            self._metrics.partitions_lost([TopicPartition(t, p) for t, p in sorted(gone)])

    def _drop(self, gone: set[TP]) -> None:
        from confluent_kafka import TopicPartition as KTP

        paused = [KTP(t, p) for t, p in gone & self._paused]
        if paused:
            # The pause flag would outlive the assignment (see _on_assign).
            self._consumer.resume(paused)
        for tp in gone:
            self._assigned.discard(tp)
            self._paused.discard(tp)
        self._offsets.forget(gone)
        if self._health is not None:
            self._health.set_assigned(len(self._assigned))

    # -- drain / lag -------------------------------------------------------------------------
    def _drained(self, now: float) -> bool:
        """True once the group's committed offsets reach the end offsets taken at start."""
        self._next_drain_check = now + 0.5
        targets = self._drain_targets
        for tp, (low, high) in targets.items():
            if self._offsets.behind(tp, high) and low < high:
                return False  # ours, consuming, not there yet: no need to ask the broker
        if self._offsets.uncommitted:
            self._commit(asynchronous=False)
        try:
            committed = committed_offsets(self._consumer, list(targets), timeout=2.0)
        except KafkaException as exc:
            # e.g. the coordinator is still waiting out a killed member's session: ask again
            # on the next check instead of failing the run (or blocking the loop for long).
            log.debug("drain check: committed offsets not available yet", error=str(exc))
            return False
        return all(low >= high or committed.get(tp, -1) >= high
                   for tp, (low, high) in targets.items())

    def _log_progress(self, now: float) -> None:
        """One INFO line per interval while events flow: how many, how fast (never per event)."""
        self._next_progress = now + self.config.progress_interval
        since, count = self._progress_mark
        self._progress_mark = (now, self.events)
        if self.events > count:
            log.info("progress", events=self.events,
                     events_per_s=round((self.events - count) / max(now - since, 1e-9), 1),
                     dead_letters=self.dead_letters, commits=self.commits,
                     assigned=len(self._assigned))

    def _record_lag(self) -> None:
        if self._metrics is None or not self._assigned:
            return
        try:
            marks = watermarks(self._consumer, sorted(self._assigned), cached=True)
        except Exception:
            return
        now_ms = time.time() * 1000
        for tp, (low, high) in marks.items():
            if high < 0:
                continue
            pos = self._offsets.position(tp, low)
            lag = max(0, high - max(pos, low))
            ts = self._offsets.last_ts.get(tp)
            secs = max(0.0, (now_ms - ts) / 1000) if lag and ts else 0.0
            self._metrics.record_lag(TopicPartition(*tp), lag, secs)

    # -- failure, signals, shutdown ----------------------------------------------------------
    def _fail(self, code: int, message: str) -> None:
        if self._fatal_message is None:
            self._fatal_message = message
            self._exit_code = code
            log.critical("worker stopping on error", error=message, exit_code=code)
        self.stop("error")

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fail(EXIT_ERROR, f"fatal Kafka client error: {scrub(str(err), self._secrets)}")
            return
        if err.code() == err._ALL_BROKERS_DOWN:
            self._connected = False
            if self._health is not None:
                self._health.set_connected(False)
        found = classify(err.name(), err.str(), self._consumer_config)
        if found is not None and found.is_settings_problem:
            # librdkafka retries a refused login or handshake for ever. Before the first
            # assignment that only means the settings are wrong: stop and say which.
            if not self._ever_assigned:
                self._fail(EXIT_BAD_SETTINGS, found.message)
                return
            # Later (rotated credentials, an expired certificate) it may heal: say so loudly,
            # at most every 30 s, and show the worker as disconnected meanwhile.
            self._connected = False
            if self._health is not None:
                self._health.set_connected(False)
            now = time.monotonic()
            if now >= self._next_auth_log:
                self._next_auth_log = now + 30.0
                log.error("kafka refuses the worker's credentials or certificate; retrying",
                          problem=found.kind, error=found.message)
            return
        log.warning("kafka client error", error=scrub(str(err), self._secrets))

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, self._on_signal)
        return old

    @staticmethod
    def _restore_signals(old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            sys.stderr.write(f"activity-worker: second {name}; exiting at once without "
                             "committing\n")
            _hard_exit(128 + signum)
        sys.stderr.write(f"activity-worker: {name} received; finishing the in-flight batch, "
                         f"committing and exiting (within {self.config.shutdown_timeout:.0f}s; "
                         "send it again to exit at once)\n")
        self.stop(name)
        self._timer = threading.Timer(self.config.shutdown_timeout, self._shutdown_overdue)
        self._timer.daemon = True
        self._timer.start()

    def _shutdown_overdue(self) -> None:
        sys.stderr.write("activity-worker: graceful shutdown exceeded --shutdown-timeout; "
                         "exiting without a final commit\n")
        _hard_exit(EXIT_SHUTDOWN_TIMEOUT)

    def _shutdown(self) -> None:
        batch = self._inflight
        if batch is not None and not batch.finalized:
            batch.cancel.set()
            batch.done.wait(5.0)
        self._queue.put(None)
        consumer = self._consumer
        if consumer is None:
            return
        try:
            self._commit(asynchronous=False)
        except Exception as exc:
            log.error("final commit failed", error=str(exc))
        try:
            consumer.close()  # leaves the group; the revoke callback commits nothing new
        except Exception as exc:
            log.error("consumer close failed", error=str(exc))
        self._dead_letters.close()

    def _summary(self, seconds: float) -> None:
        rate = self.events / seconds if seconds > 0 else 0.0
        fields: dict[str, Any] = {
            "events": self.events,
            "ok_events": self.events - self.dead_lettered_events,
            "dead_lettered_events": self.dead_lettered_events,
            "dead_letters": self.dead_letters,
            "cancelled_batches": self.cancelled_batches,
            "commits": self.commits,
            "seconds": round(seconds, 3),
            "events_per_s": round(rate, 1),
            "reason": self._stop_reason or "stopped",
            "exit_code": self._exit_code,
        }
        if self._summary_extra is not None:
            try:
                fields.update(self._summary_extra())
            except Exception as exc:  # the summary must not turn an exit into a crash
                fields["summary_error"] = str(exc)
        if self._fatal_message:
            fields["error"] = self._fatal_message
        log.info("worker summary", **fields)


def _tune_gc(gen0: int | None) -> Callable[[], None]:
    """Freeze what startup allocated (modules, config: never garbage, no need to walk it on
    every full collection) and raise the generation-0 threshold to `gen0`; returns the undo."""
    if gen0 is None:
        return lambda: None
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(gen0, before[0]), *before[1:])

    def restore() -> None:
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore


def _hard_exit(code: int) -> None:
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(code)


def default_exit_message(code: int) -> str:
    return {
        EXIT_OK: "ok",
        EXIT_ERROR: "error",
        EXIT_BAD_SETTINGS: "bad settings",
        EXIT_FATAL_PROCESSING: "a processor failed with on_failure='stop'",
        EXIT_GUARDRAIL: "the DLQ guardrail tripped",
        EXIT_SHUTDOWN_TIMEOUT: "graceful shutdown timed out",
    }.get(code, "killed by a signal")


HandlerFactory = Callable[[], BatchHandler]
__all__ = ["EXIT_BAD_SETTINGS", "EXIT_ERROR", "EXIT_FATAL_PROCESSING", "EXIT_GUARDRAIL", "EXIT_OK",
           "EXIT_SHUTDOWN_TIMEOUT", "Engine", "EngineConfig", "Guardrail", "Message"]
