"""The composition root: builds the consumer config, DLQ producer, ledger, processors, pipeline,
metrics and health server from Settings, then runs the engine. The only place that picks
concrete adapters; tests build an Engine directly with their own handler instead."""

from __future__ import annotations

import copy
import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any

import structlog

from worker.engine.lifecycle import EXIT_ERROR
from worker.engine.loop import Engine, EngineConfig
from worker.errors import ConfigError, LedgerUnavailable
from worker.kafka.admin import missing_topics, topic_max_bytes
from worker.kafka.config import for_overlapping_batches, producer_config
from worker.kafka.confluent_consumer import ConfluentConsumer
from worker.kafka.dead_letter_producer import DeadLetterProducer, default_dlq_topic
from worker.observer import WorkerObserver
from worker.processors.api import Processor, RetryPolicy
from worker.settings import Settings

log = structlog.get_logger("worker.app")


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


def run(settings: Settings) -> int:
    """Build everything and run the engine; returns the process exit code."""
    consumer_config = settings.consumer_config()
    _configure_logging()

    dlq_topics = ([settings.dlq_topic] if settings.dlq_topic
                  else [default_dlq_topic(t) for t in settings.topics])
    missing = missing_topics(consumer_config, dlq_topics)
    if missing:
        raise ConfigError(f"dead-letter topic(s) {', '.join(missing)} do not exist; create them "
                          "(`activity-worker topics create --with-dlq TOPIC`) or set --dlq-topic.")

    # import_module: works before and after the ledger backends land on main.
    open_ledger = importlib.import_module("worker.ledger").open_ledger
    from worker.processing.pipeline import Pipeline
    from worker.processors.discovery import builtins_from_env, load_processors, run_setup

    metrics: Any = None
    health: Any = None
    server: Any = None
    console: Any = None
    if settings.metrics_address:
        from worker.observability.health import HealthState
        from worker.observability.http import parse_address, serve_http
        from worker.observability.metrics import WorkerMetrics

        health = HealthState(poll_stale_after=settings.liveness_poll_stale,
                             commit_stall_after=settings.liveness_commit_stall)
        metrics = WorkerMetrics()
        if settings.console == "on":
            from worker.observability.console import open_console

            console = open_console(parse_address(settings.metrics_address)[0],
                                   settings.console_token, settings.group, settings.topics,
                                   dlq_topics, settings.ledger, consumer_config)
        server = serve_http(settings.metrics_address, metrics, health,
                            routes=[console.route] if console is not None else None)
        base = f"http://{server.host}:{server.port}"
        log.info("serving metrics and health", metrics=f"{base}/metrics",
                 healthz=f"{base}/healthz", readyz=f"{base}/readyz")
        if console is not None and console.access.open:
            log.info("serving the console", console=f"{base}/",
                     token="required" if settings.console_token else "none (loopback)")
        elif console is not None:
            log.warning("the console is refused on this non-loopback address: set "
                        "--console-token (WORKER_CONSOLE_TOKEN) to open it, or --console off")

    ledger = open_ledger(settings.ledger, retention_seconds=settings.ledger_retention,
                         lease_seconds=settings.ledger_lease)
    try:
        try:
            ledger.ping()
        except LedgerUnavailable as exc:
            raise ConfigError(f"the ledger at {settings.ledger} cannot be reached ({exc}); "
                              "start it or point --ledger at a running one.") from None
        builtins = not settings.no_builtin_processors and builtins_from_env()
        processors = apply_overrides(load_processors(settings.processors, builtins=builtins),
                                     settings)
        run_setup(processors, ledger)
    except BaseException:
        if server is not None:
            server.close()
        if console is not None:
            console.close()
        ledger.close()
        raise

    pipeline = Pipeline(processors, ledger, max_in_flight=settings.max_in_flight,
                        max_outage=settings.max_outage,
                        unmatched="dead_letter" if settings.unmatched == "dead_letter"
                        else "skip")
    dlq = DeadLetterProducer(producer_config(consumer_config), settings.dlq_topic,
                             max_bytes=min(topic_max_bytes(consumer_config, dlq_topics).values()))
    observers: list[WorkerObserver] = []
    if metrics is not None:
        metrics.watch_processor_call(pipeline.call_age)
        metrics.watch_ledger(lambda: pipeline.ledger_up)
        from worker.observability.collectors import NoEffects

        metrics.watch_effects(pipeline.effects if pipeline.effects is not None
                              else NoEffects(settings.max_in_flight))
        metrics.watch_destinations(pipeline.circuits.all)
        observers.append(metrics)
    if health is not None:
        health.watch_ledger(lambda: pipeline.ledger_up)
        health.watch_destinations(pipeline.circuits.waiting)
        observers.append(health)
    if console is not None:
        console.state.watch(lambda: pipeline.ledger_up, pipeline.effects,
                            health.readiness if health is not None else None,
                            pipeline.circuits.all)
        observers.append(console.state)
    if pipeline.overlaps:
        consumer_config = for_overlapping_batches(consumer_config)
    consumer = ConfluentConsumer(consumer_config, stats=None if metrics is None
                                 else metrics.record_librdkafka_stats)
    engine = Engine(consumer, pipeline, engine_config(settings), dlq=dlq, observers=observers)
    try:
        return engine.run()
    except Exception:
        log.exception("worker failed")
        return EXIT_ERROR
    finally:
        if server is not None:
            server.close()
        if console is not None:
            console.close()
        pipeline.close()
        ledger.close()


def _configure_logging() -> None:
    try:
        from worker.observability.logging import (
            configure_logging,
        )
    except ImportError:  # the observability package is not merged yet
        return
    configure_logging()
