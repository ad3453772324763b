"""The one place confluent-kafka clients are made: every consumer, producer and admin client of
the worker gets the log bridge (librdkafka's lines through structlog, secrets scrubbed) and a
refusal of its settings as a ConfigError that names the property, never a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from worker.errors import ConfigError
from worker.kafka.config import CONSUMER_ONLY_PREFIXES
from worker.kafka.rdkafka_log import LibrdkafkaLogger
from worker.kafka.secrets import scrub, secret_values


def settings_refused(exc: BaseException, config: Mapping[str, Any], client: str) -> ConfigError:
    """librdkafka refused to create a client: a ConfigError naming the property (no secret)."""
    err: Any = exc.args[0] if exc.args else None
    text = scrub(err.str() if hasattr(err, "str") else str(exc), secret_values(config))
    hint = (" (an encrypted key needs ssl.key.password, and the right one)"
            if "ssl.key" in text else "")
    return ConfigError(f"Kafka {client} settings were refused by librdkafka: {text}{hint}; fix "
                       "the named property (--kafka-config / KAFKA_* env).")


def without_consumer_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` less what only a consumer takes (and callables): for producers and admins."""
    return {k: v for k, v in config.items()
            if not k.startswith(CONSUMER_ONLY_PREFIXES) and not callable(v)}


def new_consumer(config: Mapping[str, Any], what: str = "consumer", logger: Any = None) -> Any:
    return _made(Consumer, dict(config), what, logger)


def new_producer(config: Mapping[str, Any], what: str = "producer", logger: Any = None) -> Any:
    return _made(Producer, dict(config), what, logger)


def new_admin(config: Mapping[str, Any], logger: Any = None,
              **extra: Any) -> Any:
    return _made(AdminClient, {**without_consumer_settings(config), **extra}, "client", logger)


def _made(client: Any, conf: dict[str, Any], what: str, logger: Any) -> Any:
    try:
        return client(conf, logger=logger or LibrdkafkaLogger(conf))
    except (KafkaException, ValueError, TypeError) as exc:
        raise settings_refused(exc, conf, what) from None
