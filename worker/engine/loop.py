"""The consumer engine: the Kafka half of the worker, free of any client library.

One loop on the main thread owns the consumer (worker.engine.consumer_port.ConsumerPort); a
handler thread (worker.engine.inflight) runs the `BatchHandler` (worker.types; the pipeline,
worker.processing.pipeline) on one batch at a time, or the handler's BatchWindow on several.
Guarantees:

- An offset is stored only after the handler returned `completed=True` for its batch and every
  dead letter of it was acknowledged (worker.engine.finishing, worker.engine.dead_letter_policy);
  then `last + 1` per partition (what may be stored and committed is decided by
  worker.engine.offsets).
- Commits: asynchronously every `commit_interval` seconds or `commit_every` events, one in
  flight at a time (worker.engine.commits); synchronously for revoked partitions inside the
  revoke callback (worker.engine.rebalance), and at shutdown. Never for lost partitions.
- While a batch runs longer than `pause_after` (0.5 s), the main thread keeps polling (rebalance
  callbacks are served, `max.poll.interval.ms` cannot expire) and keeps what it gets for the
  next batch; each partition is paused once its share of that batch waits
  (worker.engine.assignment says why not all at once).
- Records a client never hands over (transaction markers; aborted transactions' records under
  read_committed) are stepped over: once every record handed over on a partition finished, its
  stored offset moves to the client's position (worker.engine.offsets), so a transactional
  topic's lag reaches 0 and a drain ends.
- On revoke of a partition held by the in-flight batch: wait up to `revoke_timeout` for it, else
  cancel it (the handler rolls back), then store + commit what finished, then let go. A
  cancelled batch stores nothing; its partitions still ours are sought back to its first offsets.
- A batch window's parked events (BatchResult.parked: their destination is down) hold their
  partition: nothing is stored past them, it is read ahead at most `held_read_ahead` events,
  and it is read again from them when the handler says so (worker.engine.offsets;
  docs/engine.md, "Parked events").

What happens is told to `observers` (worker.observer): metrics, health, the exit summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import structlog

from worker.engine.assignment import Assignment
from worker.engine.commits import Commits
from worker.engine.config import EngineConfig
from worker.engine.connection import Connection, fatal_exit
from worker.engine.consumer_port import ConsumerPort
from worker.engine.dead_letter_policy import DeadLetterPolicy, Guardrail
from worker.engine.dead_letter_sink import DeadLetterSink
from worker.engine.finishing import Finishing
from worker.engine.inflight import Batch, InFlight
from worker.engine.lifecycle import (
    EXIT_ERROR,
    EXIT_OK,
    OutcomeTotals,
    RunCounts,
    Signals,
    tune_gc,
)
from worker.engine.offsets import OffsetTracker
from worker.engine.progress import DrainTarget, LagRecorder, ProgressLog
from worker.engine.rebalance import RebalanceListener
from worker.engine.transactions import BatchTransactions, TransactionPort
from worker.errors import ConfigError, WorkerError
from worker.observer import Observers, WorkerObserver
from worker.types import TP, BatchHandler

log = structlog.get_logger(__name__)

STEP_OVER_CHECK_S = 0.2  # how often an idle loop looks for skipped markers (a local call)
REREAD_CHECK_S = 0.1  # while a partition is held: how often to ask whether to read it again


class Engine:
    """Runs the consume → handle → dead-letter → store → commit loop until stopped.

    `consumer`: a ConsumerPort (worker.kafka.confluent_consumer.ConfluentConsumer, or the
    in-memory broker's); `dlq`: where dead letters go (None: a batch with one stops the
    worker)."""

    def __init__(self, consumer: ConsumerPort, handler: BatchHandler, config: EngineConfig, *,
                 dlq: DeadLetterSink | None = None,
                 observers: Iterable[WorkerObserver] = (),
                 transactions: TransactionPort | None = None) -> None:
        if transactions is not None and handler.window is not None:
            raise ConfigError("exactly-once mode handles one batch at a time: build the "
                              "pipeline with exactly_once=True")
        self.config = config
        self._consumer: ConsumerPort = consumer
        self._inflight = InFlight(handler, config.batch_size)
        self.totals = OutcomeTotals()
        self._observer = Observers([*observers, self.totals])
        self._parts = Assignment(consumer)
        self._offsets = OffsetTracker(config, read_ahead=config.held_read_ahead)
        self._stop = threading.Event()
        self._stop_reason = ""
        self._stop_deadline: float | None = None
        self._signals = Signals(self.stop, config.shutdown_timeout)
        self._exit_code: int = EXIT_OK
        self._fatal_message: str | None = None
        self._connection = Connection(consumer, self._observer, config.topics[0], self._fail)
        self.counts = RunCounts()
        self._commits = Commits(consumer, self._offsets, self._observer, self.counts)
        self._txn: BatchTransactions | None = None
        if transactions is not None:  # exactly-once: batches one at a time, one transaction each
            self._txn = BatchTransactions(transactions, consumer.group_metadata,
                                          self._serve_while_busy, self._stop.is_set,
                                          config.transaction_interval)
        self._dead_letters = DeadLetterPolicy(
            dlq, Guardrail(config.dlq_max_share, config.dlq_window,
                           config.guardrail_min_events), self._observer, self.counts)
        self._finishing = Finishing(consumer, self._parts, self._offsets, self._inflight,
                                    self._dead_letters, self._observer, self.counts,
                                    revoke_timeout=config.revoke_timeout,
                                    batch_size=config.batch_size, stop=self._stop,
                                    serve=self._serve_while_busy, fail=self._fail,
                                    transactions=self._txn)
        if self._txn is not None:
            self._commits.transactional = self._finishing.commit_transaction
        self._listener = RebalanceListener(config, self._parts, self._offsets, self._inflight,
                                           self._commits, self._connection, self._observer,
                                           self._finishing.for_rebalance)
        self._drain: DrainTarget | None = None
        self._next_lag = 0.0
        self._lag = LagRecorder()
        self._next_step_over = 0.0
        self._next_reread = 0.0
        self.progress = ProgressLog(config.progress_interval)

    # -- public ------------------------------------------------------------------------------
    def stop(self, reason: str = "requested") -> None:
        """Ask the loop to stop gracefully (thread-safe): finish the batch, commit, close."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop_deadline = time.monotonic() + self.config.shutdown_timeout
            self._stop.set()

    @property
    def assigned(self) -> frozenset[TP]:
        return frozenset(self._parts.assigned)

    @property
    def fatal_message(self) -> str | None:
        return self._fatal_message

    def run(self) -> int:
        """Consume until stopped, drained, --max-events reached or a fatal error; return the
        process exit code."""
        started = time.monotonic()
        # ConfigError: bad settings
        self._consumer.open(self._listener, interleave_partitions=not self._inflight.serial)
        gc_restore = tune_gc(self.config.gc_gen0_threshold)
        if self.config.install_signals:
            self._signals.install()
        log.info("consumer starting", topics=self.config.topics,
                 config=self._consumer.settings())
        self._inflight.start()
        try:
            if self.config.drain:
                self._drain = DrainTarget(self._consumer, self._offsets, self.config.topics)
            self._consumer.subscribe(self.config.topics)
            self._loop()
        except WorkerError as exc:
            self._fail(EXIT_ERROR, str(exc))
        except Exception as exc:
            self._fail(EXIT_ERROR, f"{type(exc).__name__}: {exc}")
            log.exception("engine crashed")
        finally:
            self._shutdown()
            self._signals.restore()
            gc_restore()
        log.info("worker summary", **self.counts.fields(time.monotonic() - started),
                 **self.totals.fields(), reason=self._stop_reason or "stopped",
                 exit_code=int(self._exit_code),
                 **({"error": self._fatal_message} if self._fatal_message else {}))
        return self._exit_code

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        cfg = self.config
        consumer = self._consumer
        observer = self._observer
        while not self._stop.is_set():
            observer.heartbeat()
            if cfg.max_events is not None and self.counts.events >= cfg.max_events:
                self.stop("--max-events reached")
                break
            now = time.monotonic()
            if self._drain is not None and self._drain.reached(
                    now, lambda: self._commits.sync_after_pending(self._serve_while_busy)):
                self.stop("drained")
                break
            n = cfg.batch_size
            if cfg.max_events is not None:
                n = min(n, cfg.max_events - self.counts.events)
            if self._parts.pending:
                msgs = self._parts.take_pending(n)
            else:  # (batches in flight: back soon to finish them)
                msgs = consumer.consume(n, 0.01 if self._inflight else cfg.poll_timeout)
            if msgs and self._offsets.rewinds_pending:
                msgs = self._finishing.rewound(msgs)
            if msgs:
                batch = self._batch_of(msgs)
                if batch is not None:
                    self._run_batch(batch)
            elif self._inflight:
                self._finishing.ready()
            if not msgs and now >= self._next_step_over:
                self._next_step_over = now + STEP_OVER_CHECK_S
                self._finishing.step_over_skipped()
            if self._offsets.held:  # parked events (worker.engine.offsets)
                if now >= self._next_reread:
                    self._next_reread = now + REREAD_CHECK_S
                    self._finishing.read_parked_again(self._inflight.rereads())
                self._finishing.hold_back_read_ahead()
            if self._offsets.rewinds_pending:  # (a revoke may have cancelled batches)
                self._finishing.seek_back()
            if self._txn is not None:
                if self._txn.due(idle=not msgs and not self._inflight):
                    self._commits.sync()
            elif self._offsets.commit_due():
                self._commits.send(asynchronous=True)
            self._connection.probe(now)
            if now >= self._next_lag:
                self._next_lag = now + cfg.lag_interval
                self._lag.record(consumer, self._offsets, self._parts.assigned, observer)
                self._dead_letters.serve()  # its log lines; nothing else queues up while idle
            counts = self.counts
            self.progress.maybe_log(now, counts.events, dead_letters=counts.dead_letters,
                                    commits=counts.commits, assigned=len(self._parts.assigned))

    def _batch_of(self, msgs: list[Any]) -> Batch | None:
        """The batch to run: `msgs` less error events (handled) and messages of partitions no
        longer ours; None if nothing is left."""
        batch = Batch(msgs, self._parts.assigned)
        if not batch.clean:  # the rare path: a second pass to filter, then a clean batch
            kept = [x for x in msgs if self._keep(x)]
            return Batch(kept) if kept else None
        if not self._connection.connected:
            self._connection.set(True)
        return batch

    def _keep(self, m: Any) -> bool:
        err = self._consumer.message_error(m)
        if err is not None:
            if err.fatal:
                self._fail(*fatal_exit(err))
            elif not err.end_of_partition:
                log.warning("consumer error", error=err.text)
            return False
        return (m.topic(), m.partition()) in self._parts.assigned

    def _run_batch(self, batch: Batch) -> None:
        """Hand the batch over; while too much is in flight (a plain handler: this batch), wait
        for the oldest, pausing the partitions if that takes longer than pause_after."""
        self._observer.record_traffic()  # arms /healthz's "commits stopped advancing" check
        inflight = self._inflight
        if self._txn is not None and not self._txn.begin(batch.first):
            return  # stopping: the batch is not run (nothing of it is committed)
        self._offsets.handed_over(batch.last)
        inflight.submit(batch)
        if inflight.serial:
            if not batch.done.wait(self.config.pause_after):
                while not batch.done.wait(0.02):
                    self._serve_while_busy()
        else:
            since = time.monotonic()
            while inflight.full():
                running = inflight.running()
                if running is None:  # all done: the oldest one's dead letters are on their way
                    self._finishing.ready(wait=True)
                    continue
                if not running.done.wait(0.002) and (
                        time.monotonic() - since > self.config.pause_after):
                    self._serve_while_busy()
                self._finishing.ready()
        self._finishing.ready()
        self._parts.resume_all()
        self._finishing.seek_back()

    def _serve_while_busy(self) -> None:
        """Keep the consumer alive while the handler works: callbacks, pending messages, the
        shutdown bound."""
        consumer = self._consumer
        parts = self._parts
        share = parts.share(self.config.batch_size)
        for _ in range(1000):
            m = consumer.poll()
            if m is None:
                break
            if self._keep(m):
                # kept for the next batch, in order; its partition paused once it has its share
                # waiting (worker.engine.assignment)
                parts.keep(m, (m.topic(), m.partition()), share)
        self._observer.heartbeat()
        if self._stop.is_set() and self._inflight and self._stop_deadline:
            # Leave a reserve of the shutdown bound for commit and close.
            reserve = min(5.0, self.config.shutdown_timeout / 3)
            if time.monotonic() >= self._stop_deadline - reserve and not self._finishing.rewinding:
                log.warning("shutdown bound reached; cancelling the in-flight batches",
                            events=self._inflight.events)
                self._inflight.cancel_all()

    # -- failure, shutdown -------------------------------------------------------------------
    def _fail(self, code: int, message: str) -> None:
        if self._fatal_message is None:
            self._fatal_message = message
            self._exit_code = code
            log.critical("worker stopping on error", error=message, exit_code=code)
        self.stop("error")

    def _shutdown(self) -> None:
        inflight = self._inflight
        while inflight and self._stop_reason != "error" and not inflight.head.done.wait(0.02):
            self._serve_while_busy()  # a graceful stop finishes what is in flight, bounded
            self._finishing.ready()
        self._finishing.ready(wait=True)  # (dead letters on their way, too)
        inflight.cancel_all()
        inflight.wait_all(5.0)
        self._finishing.ready(wait=True)
        inflight.stop()
        try:
            self._commits.sync_after_pending(self._serve_while_busy)
        except Exception as exc:
            log.error("final commit failed", error=str(exc))
        try:
            self._consumer.close()  # leaves the group; the revoke callback commits nothing new
        except Exception as exc:
            log.error("consumer close failed", error=str(exc))
        self._dead_letters.close()


__all__ = ["Engine", "EngineConfig"]
