"""`activity-worker ingress`: Voucherify's webhooks into Kafka (docs/ingress.md)."""

from __future__ import annotations

import argparse
import os

from worker.errors import ConfigError

HELP = ("Receive Voucherify webhook deliveries over HTTP, check their signature, and store each "
        "in Kafka before answering 2xx (503 with Retry-After when the broker cannot take it in "
        "time). Each flag can also be set by its env var; librdkafka properties by "
        "KAFKA_<PROPERTY>.")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from worker.ingress.service import (
        DEFAULT_LISTEN,
        DEFAULT_MAX_BODY,
        DEFAULT_PATH,
        DEFAULT_STORE_TIMEOUT,
    )
    from worker.settings import DEFAULT_TOPIC, add_client_arguments

    parser.add_argument("--listen", default=_env("WORKER_INGRESS_LISTEN", DEFAULT_LISTEN),
                        metavar="HOST:PORT",
                        help="where to listen for deliveries (also /metrics, /healthz, "
                        "/readyz); 0.0.0.0:9500 in a container [env WORKER_INGRESS_LISTEN; "
                        f"default {DEFAULT_LISTEN}]")
    parser.add_argument("--path", default=_env("WORKER_INGRESS_PATH", DEFAULT_PATH),
                        help=f"the webhook path [env WORKER_INGRESS_PATH; default {DEFAULT_PATH}]")
    parser.add_argument("--secret", action="append", default=None, metavar="SECRET",
                        help="the project's webhook secret key (repeatable: during a rotation "
                        "give the old and the new) [env WORKER_INGRESS_SECRET, comma-separated; "
                        "never logged]")
    parser.add_argument("--unsigned", action="store_true",
                        default=_env("WORKER_INGRESS_UNSIGNED", "") in ("1", "true", "yes"),
                        help="accept deliveries without a signature: development only, refused "
                        "off loopback [env WORKER_INGRESS_UNSIGNED]")
    parser.add_argument("--topic", default=_env("WORKER_TOPIC", DEFAULT_TOPIC),
                        help=f"where deliveries are stored [env WORKER_TOPIC; default "
                        f"{DEFAULT_TOPIC}]")
    parser.add_argument("--dlq-topic", default=os.environ.get("WORKER_DLQ_TOPIC"),
                        help="where signed deliveries that are not events go [env "
                        "WORKER_DLQ_TOPIC; default TOPIC.dlq]")
    parser.add_argument("--max-body", type=int,
                        default=int(_env("WORKER_INGRESS_MAX_BODY", str(DEFAULT_MAX_BODY))),
                        metavar="BYTES", help="larger bodies are answered 413 [env "
                        f"WORKER_INGRESS_MAX_BODY; default {DEFAULT_MAX_BODY}]")
    parser.add_argument("--store-timeout", type=float,
                        default=float(_env("WORKER_INGRESS_STORE_TIMEOUT",
                                           str(DEFAULT_STORE_TIMEOUT))),
                        metavar="SECONDS", help="how long a delivery may wait for the broker's "
                        "acknowledgement before it is answered 503 (Voucherify gives up after "
                        "10 s) [env WORKER_INGRESS_STORE_TIMEOUT; default "
                        f"{DEFAULT_STORE_TIMEOUT:g}]")
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from worker.ingress.endpoint import EndpointConfig
    from worker.ingress.service import Ingress, IngressSettings
    from worker.kafka.dead_letter_producer import default_dlq_topic
    from worker.observability.logging import configure_logging
    from worker.settings import client_config

    configure_logging()
    secrets = args.secret or [s for s in _env("WORKER_INGRESS_SECRET", "").split(",") if s]
    if args.max_body < 1 or not 0 < args.store_timeout < 10:
        raise ConfigError("--max-body must be positive and --store-timeout between 0 and 10 "
                          "seconds (Voucherify counts a delivery as failed after 10 s)")
    if not args.path.startswith("/"):
        raise ConfigError(f"--path {args.path!r}: give an absolute path, e.g. /webhooks/voucherify")
    endpoint = EndpointConfig(topic=args.topic,
                              dlq_topic=args.dlq_topic or default_dlq_topic(args.topic),
                              secrets=tuple(s.encode() for s in secrets),
                              unsigned=args.unsigned, store_timeout=args.store_timeout)
    settings = IngressSettings(listen=args.listen, path=args.path, endpoint=endpoint,
                               max_body=args.max_body,
                               kafka=client_config(args.bootstrap_servers, args.kafka_config))
    from worker import tracing

    tracing.configure("activity-worker-ingress")
    try:
        return Ingress(settings).run()
    finally:
        tracing.shutdown()
