"""The composition root: builds the consumer config, DLQ producer, ledger, processors, pipeline,
metrics and health server from Settings, then runs the engine. The only place that picks
concrete adapters; tests build an Engine directly with their own handler instead."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import structlog

from worker import tracing
from worker.engine.config import EngineConfig
from worker.engine.lifecycle import EXIT_ERROR
from worker.engine.loop import Engine
from worker.errors import ConfigError, LedgerUnavailable
from worker.kafka.admin import missing_topics, topic_max_bytes
from worker.kafka.config import producer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.kafka.dead_letter_producer import DeadLetterProducer, default_dlq_topic
from worker.kafka.emitted_marks import Forget, KafkaEmittedMarks, ensure_changelogs
from worker.kafka.output_producer import OutputProducer, output_config
from worker.kafka.transactions import TransactionalProducer, transactional_id
from worker.ledger import Ledger, open_ledger
from worker.observability.collectors import NoEffects
from worker.observability.console import Console, open_console
from worker.observability.health import HealthState
from worker.observability.http import parse_address, serve_http
from worker.observability.logging import configure_logging
from worker.observability.metrics import WorkerMetrics
from worker.observer import WorkerObserver
from worker.processing.pipeline import Pipeline
from worker.processors.api import Processor, RetryPolicy
from worker.processors.discovery import builtins_from_env, load_processors, run_setup
from worker.settings import Settings
from worker.vocabulary import ProcessingGuarantee

log = structlog.get_logger(__name__)

# The run settings the engine reads: the EngineConfig fields that have a Settings field of the
# same name (the rest of EngineConfig keeps its defaults).
ENGINE_SETTINGS = frozenset(f.name for f in dataclasses.fields(EngineConfig)) & frozenset(
    f.name for f in dataclasses.fields(Settings))


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(**{name: copy.copy(getattr(settings, name)) for name in ENGINE_SETTINGS})


def apply_overrides(processors: Sequence[Processor], settings: Settings) -> list[Processor]:
    """--retry-* apply to processors that kept the default RetryPolicy; --on-failure to all."""
    default = RetryPolicy()
    out: list[Processor] = []
    for proc in processors:
        if proc.retry == default and (settings.retry_attempts or settings.retry_backoff
                                      is not None or settings.retry_max_backoff is not None):
            proc = dataclasses.replace(proc, retry=RetryPolicy(
                max_attempts=settings.retry_attempts or default.max_attempts,
                initial_backoff=(settings.retry_backoff if settings.retry_backoff is not None
                                 else default.initial_backoff),
                max_backoff=(settings.retry_max_backoff if settings.retry_max_backoff
                             is not None else default.max_backoff)))
        if settings.on_failure is not None:
            proc = dataclasses.replace(proc, on_failure=settings.on_failure)  # type: ignore[arg-type]
        out.append(proc)
    return out


@dataclasses.dataclass(slots=True)
class _Http:
    """What the metrics address serves; all None when --metrics-address is off."""

    metrics: WorkerMetrics | None = None
    health: HealthState | None = None
    console: Console | None = None


def run(settings: Settings) -> int:
    """Build everything and run the engine; returns the process exit code."""
    consumer_config = settings.consumer_config()
    configure_logging()
    dlq_topics = _dlq_topics(settings, consumer_config)
    with ExitStack() as stack:
        if tracing.configure("activity-worker"):
            stack.callback(tracing.shutdown)  # last: what the run traced is exported
        # Closed last, after the HTTP server and the console: the pipeline, then the ledger.
        stores = stack.enter_context(ExitStack())
        http = _serve_http(settings, consumer_config, dlq_topics, stack)
        ledger = open_ledger(settings.ledger, retention_seconds=settings.ledger_retention,
                             lease_seconds=settings.ledger_lease)
        stores.callback(ledger.close)
        processors = _processors(settings, ledger)
        marks, outputs = _outputs(settings, consumer_config)
        stores.callback(outputs.close)
        pipeline = Pipeline(processors, ledger, max_in_flight=settings.max_in_flight,
                            max_outage=settings.max_outage,
                            park_after=settings.park_after or None,
                            unmatched="dead_letter" if settings.unmatched == "dead_letter"
                            else "skip", outputs=outputs, emitted_marks=marks,
                            tracer=tracing.batch_tracer(settings.group, processors))
        tracing.trace_circuits(pipeline.circuits)
        stores.callback(pipeline.close)
        transactional = outputs if isinstance(outputs, TransactionalProducer) else None
        dlq = DeadLetterProducer(  # (in exactly-once mode: in the batches' transactions)
            producer_config(consumer_config), settings.dlq_topic,
            max_bytes=min(topic_max_bytes(consumer_config, dlq_topics).values()),
            client=None if transactional is None else lambda: transactional.client)
        observers = _observers(settings, http, pipeline)
        if isinstance(pipeline.tracer, tracing.BatchTracing):
            observers.append(pipeline.tracer.commits)  # a span per commit of sampled batches
        if marks is not None:
            observers.append(Forget(marks))
        engine = _engine(settings, consumer_config, pipeline, dlq, observers, http.metrics,
                         transactional)
        try:
            return engine.run()
        except Exception:
            log.exception("worker failed")
            return EXIT_ERROR


def _outputs(settings: Settings, consumer_config: dict[str, Any]
             ) -> tuple[KafkaEmittedMarks | None, OutputProducer]:
    """Where emitted records go: an idempotent producer, or in exactly-once mode the
    transactional producer and the emitted marks it writes (their changelogs made here)."""
    if settings.processing_guarantee != ProcessingGuarantee.EXACTLY_ONCE:
        return None, OutputProducer(output_config(consumer_config))
    ensure_changelogs(consumer_config, settings.group, settings.topics,
                      settings.ledger_retention)
    marks = KafkaEmittedMarks(consumer_config, settings.group,
                              retention=settings.ledger_retention)
    return marks, TransactionalProducer(
        output_config(consumer_config),
        transactional_id(settings.group, settings.group_instance_id), marks=marks)


def _dlq_topics(settings: Settings, consumer_config: dict[str, Any]) -> list[str]:
    """The dead-letter topics; a missing one stops the start with how to create it."""
    dlq_topics = ([settings.dlq_topic] if settings.dlq_topic
                  else [default_dlq_topic(t) for t in settings.topics])
    missing = missing_topics(consumer_config, dlq_topics)
    if missing:
        raise ConfigError(f"dead-letter topic(s) {', '.join(missing)} do not exist; create them "
                          "(`activity-worker topics create --with-dlq TOPIC`) or set --dlq-topic.")
    return dlq_topics


def _serve_http(settings: Settings, consumer_config: dict[str, Any], dlq_topics: list[str],
                stack: ExitStack) -> _Http:
    """The /metrics and health server and the console (closed by `stack`)."""
    if not settings.metrics_address:
        return _Http()
    health = HealthState(poll_stale_after=settings.liveness_poll_stale,
                         commit_stall_after=settings.liveness_commit_stall)
    metrics = WorkerMetrics()
    console = None
    if settings.console == "on":
        console = open_console(parse_address(settings.metrics_address)[0],
                               settings.console_token, settings.group, settings.topics,
                               dlq_topics, settings.ledger, consumer_config)
        stack.callback(console.close)
    server = serve_http(settings.metrics_address, metrics, health,
                        routes=[console.route] if console is not None else None)
    stack.callback(server.close)
    base = f"http://{server.host}:{server.port}"
    log.info("serving metrics and health", metrics=f"{base}/metrics",
             healthz=f"{base}/healthz", readyz=f"{base}/readyz")
    if console is not None and console.access.open:
        log.info("serving the console", console=f"{base}/",
                 token="required" if settings.console_token else "none (loopback)")
    elif console is not None:
        log.warning("the console is refused on this non-loopback address: set "
                    "--console-token (WORKER_CONSOLE_TOKEN) to open it, or --console off")
    return _Http(metrics, health, console)


def _processors(settings: Settings, ledger: Ledger) -> list[Processor]:
    """The processors to run (set up against the ledger, which must be reachable)."""
    try:
        ledger.ping()
    except LedgerUnavailable as exc:
        raise ConfigError(f"the ledger at {settings.ledger} cannot be reached ({exc}); "
                          "start it or point --ledger at a running one.") from None
    builtins = not settings.no_builtin_processors and builtins_from_env()
    processors = apply_overrides(load_processors(settings.processors, builtins=builtins),
                                 settings)
    run_setup(processors, ledger)
    return processors


def _observers(settings: Settings, http: _Http, pipeline: Pipeline) -> list[WorkerObserver]:
    """The metrics, health and console, watching the pipeline and fed by the engine."""
    observers: list[WorkerObserver] = []
    if http.metrics is not None:
        http.metrics.watch_processor_call(pipeline.call_age)
        http.metrics.watch_ledger(lambda: pipeline.ledger_up)
        http.metrics.watch_effects(pipeline.effects if pipeline.effects is not None
                                   else NoEffects(settings.max_in_flight))
        http.metrics.watch_destinations(pipeline.circuits.all)
        observers.append(http.metrics)
    if http.health is not None:
        http.health.watch_ledger(lambda: pipeline.ledger_up)
        http.health.watch_destinations(pipeline.circuits.waiting)
        observers.append(http.health)
    if http.console is not None:
        http.console.state.watch(lambda: pipeline.ledger_up, pipeline.effects,
                                 http.health.readiness if http.health is not None else None,
                                 pipeline.circuits.all)
        observers.append(http.console.state)
    return observers


def _engine(settings: Settings, consumer_config: dict[str, Any], pipeline: Pipeline,
            dlq: DeadLetterProducer, observers: list[WorkerObserver],
            metrics: WorkerMetrics | None,
            transactions: TransactionalProducer | None) -> Engine:
    """The consumer and the engine that runs the pipeline on it (in exactly-once mode with
    the transactional producer as its transaction port)."""
    consumer = ConfluentConsumer(consumer_config, stats=None if metrics is None
                                 else metrics.record_librdkafka_stats)
    return Engine(consumer, pipeline, engine_config(settings), dlq=dlq, observers=observers,
                  transactions=transactions)
