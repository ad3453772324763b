"""Settings from flags and environment variables: registers the flags of `OPTIONS` on a parser
and resolves flag > WORKER_* env > default into a validated `Settings`; and the flags and config
of a command's one-off Kafka client."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from worker.errors import ConfigError
from worker.kafka.config import config_from_env, parse_pairs
from worker.settings.table import DEFAULT_BOOTSTRAP, OPTIONS, Kind, Option, Settings, default_text


def client_config(bootstrap: str | None, pairs: list[str] | None,
                  environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka properties for the one-off client of a command (`topics create`, `generate`):
    KAFKA_* env, then `--kafka-config` pairs; the bootstrap servers from `--bootstrap-servers`,
    else WORKER_BOOTSTRAP_SERVERS, else KAFKA_BOOTSTRAP_SERVERS, else the default."""
    env = os.environ if environ is None else environ
    conf = config_from_env(env)
    conf.update(parse_pairs(list(pairs or []), "--kafka-config"))
    conf["bootstrap.servers"] = (bootstrap or env.get("WORKER_BOOTSTRAP_SERVERS")
                                 or conf.get("bootstrap.servers") or DEFAULT_BOOTSTRAP)
    return conf


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """`--bootstrap-servers` and `--kafka-config` for a command's one-off Kafka client."""
    parser.add_argument("--bootstrap-servers", default=None, metavar="HOSTS",
                        help="Kafka bootstrap servers [env WORKER_BOOTSTRAP_SERVERS or "
                        f"KAFKA_BOOTSTRAP_SERVERS; default {DEFAULT_BOOTSTRAP}]")
    parser.add_argument("--kafka-config", action="append", default=None, metavar="KEY=VALUE",
                        help="librdkafka property (repeatable), e.g. security.protocol=SASL_SSL; "
                        "also KAFKA_<PROPERTY> env vars, as for `run`")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register every option; defaults are resolved later so an explicit flag can be told from
    an env var."""
    for opt in OPTIONS:
        help_text = f"{opt.doc.help} [env {opt.env}; default {default_text(opt.default())}]"
        if opt.kind is Kind.FLAG:
            parser.add_argument(opt.flag, action="store_true", default=None, help=help_text)
        elif opt.kind is Kind.LIST:
            parser.add_argument(opt.flag, action="append", default=None, help=help_text,
                                metavar=opt.doc.metavar)
        elif opt.kind is Kind.CHOICE:
            parser.add_argument(opt.flag, choices=opt.doc.choices, default=None, help=help_text)
        else:
            parser.add_argument(opt.flag, default=None, help=help_text, metavar=opt.doc.metavar)


def _convert(opt: Option, raw: Any, source: str) -> Any:
    try:
        if opt.kind is Kind.INT:
            value = int(raw)
            if value < 1:
                raise ValueError
            return value
        if opt.kind is Kind.FLOAT:
            fvalue = float(raw)
            if fvalue < 0:
                raise ValueError
            return fvalue
    except (TypeError, ValueError):
        kind = "a positive whole number" if opt.kind is Kind.INT else "a non-negative number"
        raise ConfigError(f"{source}={raw!r} is not valid: give {kind}.") from None
    if opt.kind is Kind.CHOICE and raw not in opt.doc.choices:
        raise ConfigError(
            f"{source}={raw!r} is not valid: use one of {', '.join(opt.doc.choices)}.")
    return raw


def _env_value(opt: Option, text: str) -> Any:
    if opt.kind is Kind.FLAG:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{opt.env}={text!r} is not valid: use true or false.")
    if opt.kind is Kind.LIST:
        if opt.name == "kafka_config":
            return [p for chunk in text.splitlines() for p in chunk.split(";") if p.strip()]
        return [p.strip() for p in text.split(",") if p.strip()]
    return _convert(opt, text, opt.env)


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve flags > WORKER_* env > defaults, validate, and return Settings."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    explicit: set[str] = set()
    for opt in OPTIONS:
        raw = getattr(args, opt.dest, None)
        if raw is not None:
            explicit.add(opt.name)
            values[opt.name] = raw if opt.kind in (Kind.FLAG, Kind.LIST) else _convert(
                opt, raw, opt.flag)
        elif env.get(opt.env) not in (None, ""):
            explicit.add(opt.name)
            values[opt.name] = _env_value(opt, env[opt.env])
        else:
            values[opt.name] = opt.default()

    kafka = config_from_env(env)
    pairs = values.pop("kafka_config")  # key=value pairs as given; the dict is made here
    kafka.update(parse_pairs(pairs if "kafka_config" in explicit else [], "--kafka-config"))
    bootstrap = kafka.pop("bootstrap.servers", None)
    if "bootstrap_servers" not in explicit and bootstrap:
        values["bootstrap_servers"] = bootstrap
    group_id = kafka.pop("group.id", None)
    if "group" not in explicit and group_id:
        values["group"] = group_id
    instance = kafka.pop("group.instance.id", None)
    if not values["group_instance_id"] and instance:
        values["group_instance_id"] = instance
    protocol = kafka.pop("group.protocol", None)
    if "group_protocol" not in explicit and protocol:
        values["group_protocol"] = protocol

    metrics = values["metrics_address"]
    if metrics is not None and metrics.strip().lower() in ("", "off", "none", "0"):
        values["metrics_address"] = None
    elif metrics is not None and ":" not in metrics:
        raise ConfigError(f"--metrics-address={metrics!r} is not host:port; write e.g. "
                          "127.0.0.1:9400, or 'off' to disable the HTTP server.")
    if values["liveness_poll_stale"] <= 0 or values["liveness_commit_stall"] <= 0:
        raise ConfigError("--liveness-poll-stale and --liveness-commit-stall must be above 0 "
                          "seconds.")
    topics = [t.strip() for t in values.pop("topics") if t.strip()]
    if not topics:
        raise ConfigError("no topic to consume: pass --topic NAME (or WORKER_TOPIC).")
    if not values["bootstrap_servers"]:
        raise ConfigError("--bootstrap-servers is empty: pass host:port of a broker.")
    share = values["dlq_max_share"]
    if not 0 < share <= 1:
        raise ConfigError(f"--dlq-max-share={share} must be in (0, 1]; 1 disables the guardrail.")
    if values["dlq_topic"] and values["dlq_topic"] in topics:
        raise ConfigError("--dlq-topic must differ from the consumed topics, or dead letters "
                          "would be consumed again.")
    if values["max_in_flight"] < 1:
        raise ConfigError(f"--max-in-flight={values['max_in_flight']} must be at least 1.")
    if values["max_outage"] is not None and values["max_outage"] <= 0:
        raise ConfigError(f"--max-outage={values['max_outage']:g} must be above 0 seconds; "
                          "leave it unset to wait out any outage.")
    if values["park_after"] < 0:
        raise ConfigError(f"--park-after={values['park_after']:g} must be 0 (off) or above; "
                          "it is how long a destination may be down before its events park.")
    retention, lease = values["ledger_retention"], values["ledger_lease"]
    if retention <= 0 or lease <= 0 or lease >= retention:
        raise ConfigError(f"--ledger-lease ({lease:g} s) must be shorter than its retention "
                          f"(--ledger-retention, {retention:g} s), and both above 0.")
    settings = Settings(topics=topics, kafka_config=kafka, **values)
    settings.consumer_config()  # validate the librdkafka overrides now, with a clear error
    return settings
