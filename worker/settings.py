"""Typed settings for `activity-worker run`, from flags and environment variables.

Every flag `--some-name` can also be set by the env var `WORKER_SOME_NAME`; a flag given on the
command line wins over the env var, which wins over the default. Repeatable flags take a
comma-separated env value (`WORKER_TOPIC=a,b`); `WORKER_KAFKA_CONFIG` takes `key=value` pairs
separated by newlines or `;`.

Any librdkafka property can be passed with `--kafka-config key=value` or an env var
`KAFKA_<PROPERTY>` (`KAFKA_SASL_PASSWORD` → `sasl.password`); `--kafka-config` wins over
`KAFKA_*`. `KAFKA_BOOTSTRAP_SERVERS` is used when `--bootstrap-servers` is not given.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.engine.config import EngineConfig
from worker.errors import ConfigError
from worker.kafka.config import build_consumer_config, config_from_env, parse_pairs
from worker.ledger.base import DEFAULT_LEASE_SECONDS, DEFAULT_RETENTION_SECONDS
from worker.observability.health import DEFAULT_COMMIT_STALL_AFTER, DEFAULT_POLL_STALE_AFTER
from worker.processing.effects import DEFAULT_MAX_IN_FLIGHT

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TOPIC = "customer-activity"
DEFAULT_GROUP = "activity-worker"
DEFAULT_LEDGER = "sqlite:///./.local/activity-worker.db"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9400"
DEFAULT_CONSOLE = "on"
# The engine's defaults, written once in EngineConfig; the flags and Settings take them from it.
_ENGINE = EngineConfig(topics=[])


@dataclass(frozen=True, slots=True)
class _Opt:
    flag: str
    kind: str  # str, int, float, bool, list, choice
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "WORKER_" + self.dest.upper()


OPTIONS: tuple[_Opt, ...] = (
    _Opt("--bootstrap-servers", "str", DEFAULT_BOOTSTRAP,
         "Kafka bootstrap servers, host:port[,host:port...]", metavar="HOSTS"),
    _Opt("--topic", "list", [DEFAULT_TOPIC], "topic to consume (repeatable)", metavar="TOPIC"),
    _Opt("--group", "str", DEFAULT_GROUP, "consumer group id", metavar="GROUP"),
    _Opt("--group-instance-id", "str", None,
         "static membership id (group.instance.id): a restart within the session timeout "
         "keeps the partitions without a rebalance; unique per worker", metavar="ID"),
    _Opt("--group-protocol", "choice", "classic",
         "rebalance protocol: 'classic' (cooperative-sticky) or 'consumer' (KIP-848, Kafka 4+)",
         choices=("classic", "consumer")),
    _Opt("--processors", "list", [],
         "module path to import processors from (repeatable), e.g. myapp.processors",
         metavar="MODULE"),
    _Opt("--ledger", "str", DEFAULT_LEDGER,
         "idempotency ledger URL: memory://, sqlite:///path, redis://..., postgresql://...",
         metavar="URL"),
    _Opt("--ledger-retention", "float", DEFAULT_RETENTION_SECONDS,
         "keep done marks this many seconds, then prune them (7 days: longer than the 24 h "
         "webhook retry window)", metavar="SECONDS"),
    _Opt("--ledger-lease", "float", DEFAULT_LEASE_SECONDS,
         "how long a claim of a crashed worker blocks the key (Redis, memory); must cover a "
         "batch", metavar="SECONDS"),
    _Opt("--dlq-topic", "str", None,
         "dead-letter topic (default: the source topic + '.dlq')", metavar="TOPIC"),
    _Opt("--metrics-address", "str", DEFAULT_METRICS_ADDRESS,
         "host:port of the /metrics and health HTTP server ('off' disables it)",
         metavar="HOST:PORT"),
    _Opt("--console", "choice", DEFAULT_CONSOLE,
         "the ops console at / and /status.json on the metrics address: 'on' or 'off'; on a "
         "non-loopback address it needs --console-token", choices=("on", "off")),
    _Opt("--console-token", "str", None,
         "token the console asks for (Bearer header, or open /?token=TOKEN once); required "
         "for the console when the metrics address is not loopback", metavar="TOKEN"),
    _Opt("--liveness-poll-stale", "float", DEFAULT_POLL_STALE_AFTER,
         "/healthz fails when the poll loop has not run for this long", metavar="SECONDS"),
    _Opt("--liveness-commit-stall", "float", DEFAULT_COMMIT_STALL_AFTER,
         "/healthz fails when messages arrived this long ago and no commit advanced since "
         "(a stuck processor): keep it above the slowest batch", metavar="SECONDS"),
    _Opt("--no-builtin-processors", "bool", False,
         "do not load the built-in processors (loyalty tiers, points, redemptions, messaging); "
         "WORKER_BUILTIN_PROCESSORS=false does the same"),
    _Opt("--drain", "bool", False,
         "exit 0 once the group has consumed up to the end offsets that existed at start"),
    _Opt("--max-events", "int", None, "exit 0 after processing this many events", metavar="N"),
    _Opt("--kafka-config", "list", [],
         "librdkafka property key=value (repeatable), e.g. security.protocol=SASL_SSL; "
         "also settable as KAFKA_<PROPERTY> env vars", metavar="KEY=VALUE"),
    _Opt("--batch-size", "int", _ENGINE.batch_size, "events per consume() batch", metavar="N"),
    _Opt("--commit-interval", "float", _ENGINE.commit_interval,
         "commit stored offsets at least every this many seconds", metavar="SECONDS"),
    _Opt("--commit-every", "int", _ENGINE.commit_every,
         "commit stored offsets after this many events", metavar="N"),
    _Opt("--shutdown-timeout", "float", _ENGINE.shutdown_timeout,
         "on SIGTERM/SIGINT: finish the in-flight batch, commit and exit within this bound",
         metavar="SECONDS"),
    _Opt("--revoke-timeout", "float", _ENGINE.revoke_timeout,
         "on partition revoke: wait this long for the in-flight batch, then cancel it",
         metavar="SECONDS"),
    _Opt("--max-in-flight", "int", DEFAULT_MAX_IN_FLIGHT,
         "async processors: calls in flight at once per worker (effects of one ordering key "
         "still run one at a time, in offset order)", metavar="N"),
    _Opt("--max-outage", "float", None,
         "a destination (the system a processor calls) unavailable this long: the events "
         "waiting for it are dead-lettered as 'destination_unavailable' (replay them with "
         "`dlq replay --error-class destination_unavailable` once it is back); unset: they "
         "wait as long as it takes, with consumption paused", metavar="SECONDS"),
    _Opt("--retry-attempts", "int", None,
         "attempts per processor call before dead-lettering (for processors that keep the "
         "library default retry policy)", metavar="N"),
    _Opt("--retry-backoff", "float", None,
         "first retry delay in seconds (doubles per attempt)", metavar="SECONDS"),
    _Opt("--retry-max-backoff", "float", None, "longest retry delay in seconds",
         metavar="SECONDS"),
    _Opt("--on-failure", "choice", None,
         "when retries run out: 'dead_letter' the event, or 'stop' the worker (exit 3); "
         "overrides every processor's own choice", choices=("dead_letter", "stop")),
    _Opt("--unmatched", "choice", "skip",
         "events whose type matches no processor: 'skip' (commit past) or 'dead_letter'",
         choices=("skip", "dead_letter")),
    _Opt("--dlq-max-share", "float", _ENGINE.guardrail_share,
         "DLQ guardrail: stop (exit 4) when more than this share of the last --dlq-window "
         "events were dead-lettered (1 disables)", metavar="SHARE"),
    _Opt("--dlq-window", "int", _ENGINE.guardrail_window, "DLQ guardrail window, in events",
         metavar="N"),
)


@dataclass(slots=True)
class Settings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topics: list[str] = field(default_factory=lambda: [DEFAULT_TOPIC])
    group: str = DEFAULT_GROUP
    group_instance_id: str | None = None
    group_protocol: str = "classic"
    processors: list[str] = field(default_factory=list)
    no_builtin_processors: bool = False
    ledger: str = DEFAULT_LEDGER
    ledger_retention: float = DEFAULT_RETENTION_SECONDS
    ledger_lease: float = DEFAULT_LEASE_SECONDS
    dlq_topic: str | None = None
    metrics_address: str | None = DEFAULT_METRICS_ADDRESS
    console: str = DEFAULT_CONSOLE
    console_token: str | None = None
    liveness_poll_stale: float = DEFAULT_POLL_STALE_AFTER
    liveness_commit_stall: float = DEFAULT_COMMIT_STALL_AFTER
    drain: bool = False
    max_events: int | None = None
    kafka_config: dict[str, str] = field(default_factory=dict)
    batch_size: int = _ENGINE.batch_size
    commit_interval: float = _ENGINE.commit_interval
    commit_every: int = _ENGINE.commit_every
    shutdown_timeout: float = _ENGINE.shutdown_timeout
    revoke_timeout: float = _ENGINE.revoke_timeout
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_outage: float | None = None
    retry_attempts: int | None = None
    retry_backoff: float | None = None
    retry_max_backoff: float | None = None
    on_failure: str | None = None
    unmatched: str = "skip"
    dlq_max_share: float = _ENGINE.guardrail_share
    dlq_window: int = _ENGINE.guardrail_window

    def consumer_config(self) -> dict[str, Any]:
        """librdkafka properties for the consumer (validated; raises ConfigError)."""
        return build_consumer_config(
            self.bootstrap_servers, self.group, self.kafka_config,
            group_instance_id=self.group_instance_id, group_protocol=self.group_protocol)


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
        default_text = opt.default if opt.default not in (None, [], "") else "unset"
        if isinstance(opt.default, list) and opt.default:
            default_text = ",".join(opt.default)
        help_text = f"{opt.help} [env {opt.env}; default {default_text}]"
        if opt.kind == "bool":
            parser.add_argument(opt.flag, action="store_true", default=None, help=help_text)
        elif opt.kind == "list":
            parser.add_argument(opt.flag, action="append", default=None, help=help_text,
                                metavar=opt.metavar)
        elif opt.kind == "choice":
            parser.add_argument(opt.flag, choices=opt.choices, default=None, help=help_text)
        else:
            parser.add_argument(opt.flag, default=None, help=help_text, metavar=opt.metavar)


def _convert(opt: _Opt, raw: Any, source: str) -> Any:
    try:
        if opt.kind == "int":
            value = int(raw)
            if value < 1:
                raise ValueError
            return value
        if opt.kind == "float":
            fvalue = float(raw)
            if fvalue < 0:
                raise ValueError
            return fvalue
    except (TypeError, ValueError):
        kind = "a positive whole number" if opt.kind == "int" else "a non-negative number"
        raise ConfigError(f"{source}={raw!r} is not valid: give {kind}.") from None
    if opt.kind == "choice" and raw not in opt.choices:
        raise ConfigError(f"{source}={raw!r} is not valid: use one of {', '.join(opt.choices)}.")
    return raw


def _env_value(opt: _Opt, text: str) -> Any:
    if opt.kind == "bool":
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{opt.env}={text!r} is not valid: use true or false.")
    if opt.kind == "list":
        if opt.dest == "kafka_config":
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
            explicit.add(opt.dest)
            values[opt.dest] = raw if opt.kind in ("bool", "list") else _convert(
                opt, raw, opt.flag)
        elif env.get(opt.env) not in (None, ""):
            explicit.add(opt.dest)
            values[opt.dest] = _env_value(opt, env[opt.env])
        else:
            values[opt.dest] = list(opt.default) if isinstance(opt.default, list) \
                else opt.default

    kafka = config_from_env(env)
    kafka.update(parse_pairs(values.pop("kafka_config"), "--kafka-config"))
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
    topics = [t.strip() for t in values.pop("topic") if t.strip()]
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
    retention, lease = values["ledger_retention"], values["ledger_lease"]
    if retention <= 0 or lease <= 0 or lease >= retention:
        raise ConfigError(f"--ledger-lease ({lease:g} s) must be shorter than its retention "
                          f"(--ledger-retention, {retention:g} s), and both above 0.")
    settings = Settings(topics=topics, kafka_config=kafka, **values)
    settings.consumer_config()  # validate the librdkafka overrides now, with a clear error
    return settings
