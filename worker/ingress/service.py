"""`activity-worker ingress` put together: the durable producer, the webhook endpoint on the
bounded HTTP server (with /metrics, /healthz, /readyz), a log line for each readiness change,
and a graceful stop on SIGTERM/SIGINT (stop answering, wait for what the broker still has to
acknowledge, exit)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from worker.errors import ConfigError
from worker.ingress.endpoint import EndpointConfig, WebhookEndpoint
from worker.ingress.metrics import IngressMetrics
from worker.observability.http import (
    BodyRoute,
    HttpLimits,
    HttpServer,
    is_loopback,
    parse_address,
    serve_http,
)

log = structlog.get_logger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9500"
DEFAULT_PATH = "/webhooks/voucherify"
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_STORE_TIMEOUT = 5.0
SHUTDOWN_FLUSH_S = 10.0


@dataclass(frozen=True, slots=True)
class IngressSettings:
    listen: str
    path: str
    endpoint: EndpointConfig
    max_body: int
    kafka: Mapping[str, Any]
    limits: HttpLimits = field(default_factory=HttpLimits)


class IngressHealth:
    """/healthz: the process answers (the loop serves it); /readyz: a broker answers and the
    topic is there."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "the producer has not reached a broker yet"

    def liveness(self) -> tuple[bool, list[str]]:
        return True, []

    def readiness(self) -> tuple[bool, list[str]]:
        return self.ready, [] if self.ready else [self.reason]

    def details(self) -> dict[str, int]:
        return {}


class Ingress:
    def __init__(self, settings: IngressSettings) -> None:
        from worker.kafka.durable_producer import DurableProducer

        host, _port = parse_address(settings.listen)
        if settings.endpoint.unsigned and not is_loopback(host):
            raise ConfigError(f"--unsigned accepts deliveries without a signature and is for "
                              f"development on loopback only; {settings.listen} is not "
                              "loopback: give --secret (WORKER_INGRESS_SECRET) instead")
        if not settings.endpoint.unsigned and not settings.endpoint.secrets:
            raise ConfigError("no webhook secret: give --secret (repeatable, or "
                              "WORKER_INGRESS_SECRET, comma-separated) with the project's secret "
                              "key from Voucherify's webhook settings, or --unsigned on "
                              "loopback for development")
        self.settings = settings
        self.metrics = IngressMetrics()
        self.health = IngressHealth()
        self.producer = DurableProducer(settings.kafka, settings.endpoint.topic,
                                        send_timeout=settings.endpoint.store_timeout,
                                        on_ready_change=self._ready_changed)
        self.endpoint = WebhookEndpoint(settings.endpoint, self._store, self.metrics)
        self.server: HttpServer | None = None
        self._stop = threading.Event()

    async def _store(self, topic: str, value: bytes, key: bytes | None,
                     headers: Any) -> None:
        await self.producer.send(topic, value, key, headers)

    def _ready_changed(self, ready: bool, reason: str) -> None:
        self.health.ready, self.health.reason = ready, reason
        self.metrics.ready.set(1 if ready else 0)
        if ready:
            log.info("ingress ready: deliveries are stored in Kafka",
                     topic=self.settings.endpoint.topic)
        else:
            log.warning("ingress not ready: deliveries are answered 503 until Kafka takes them",
                        reason=reason)

    def start(self) -> HttpServer:
        s = self.settings
        self.server = serve_http(
            s.listen, self.metrics, self.health, limits=s.limits, what="the webhook ingress",
            body_routes=[BodyRoute(s.path, s.max_body, self.endpoint.handle,
                                   self.endpoint.refused)])
        base = f"http://{self.server.address}"
        log.info("webhook ingress listening", webhook=f"{base}{s.path}",
                 metrics=f"{base}/metrics", healthz=f"{base}/healthz", readyz=f"{base}/readyz",
                 topic=s.endpoint.topic, dlq_topic=s.endpoint.dlq_topic,
                 secrets=len(s.endpoint.secrets))
        if s.endpoint.unsigned:
            log.warning("UNSIGNED MODE: deliveries are accepted WITHOUT a signature check; "
                        "for development on loopback only — never expose this endpoint")
        return self.server

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> int:
        self.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self.stop)
        try:
            self._stop.wait()
        finally:
            self.close()
        return 0

    def close(self) -> None:
        if self.server is not None:
            self.server.close()  # no new deliveries; those in flight lose their connection
        left = self.producer.close(SHUTDOWN_FLUSH_S)
        log.info("webhook ingress stopped", records_not_acknowledged=left)
