"""The run settings of `activity-worker run`, declared once.

`Settings` is the table: each field declares its type, its default and its --help text (with
`setting(...)`). `OPTIONS` is the same table as the command line and the environment see it
(flag, WORKER_* env var, kind), made from the fields; `worker.settings.resolve` registers the
flags and reads them, `markdown_table` prints the README's configuration table. A new run
setting is one new field here."""

from __future__ import annotations

import copy
import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from worker.engine.config import EngineConfig
from worker.kafka.config import build_consumer_config
from worker.ledger.base import DEFAULT_LEASE_SECONDS, DEFAULT_RETENTION_SECONDS
from worker.observability.health import DEFAULT_COMMIT_STALL_AFTER, DEFAULT_POLL_STALE_AFTER
from worker.processing.effects import DEFAULT_MAX_IN_FLIGHT
from worker.processing.parking import DEFAULT_PARK_AFTER
from worker.vocabulary import ProcessingGuarantee

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TOPIC = "customer-activity"
DEFAULT_GROUP = "activity-worker"
DEFAULT_LEDGER = "sqlite:///./.local/activity-worker.db"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9400"
DEFAULT_CONSOLE = "on"
# The engine's defaults, written once in EngineConfig; the settings take them from it. The run
# settings the engine reads have the same field names in both (worker.app copies them over).
_ENGINE = EngineConfig(topics=[])
_DOC = "worker.settings"  # the metadata key of a field's flag documentation


@dataclass(frozen=True, slots=True)
class _Doc:
    help: str
    metavar: str | None
    choices: tuple[str, ...]
    flag: str | None  # when the flag is not the field name (`topics` is `--topic`)


def setting(default: Any, help: str, *, metavar: str | None = None,
            choices: tuple[str, ...] = (), flag: str | None = None) -> Any:
    """A field of `Settings`: its default and the documentation of its flag and env var."""
    meta = {_DOC: _Doc(help, metavar, choices, flag)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.copy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(slots=True)
class Settings:
    bootstrap_servers: str = setting(
        DEFAULT_BOOTSTRAP, "Kafka bootstrap servers, host:port[,host:port...]", metavar="HOSTS")
    topics: list[str] = setting(
        [DEFAULT_TOPIC], "topic to consume (repeatable)", metavar="TOPIC", flag="--topic")
    group: str = setting(DEFAULT_GROUP, "consumer group id", metavar="GROUP")
    group_instance_id: str | None = setting(
        None, "static membership id (group.instance.id): a restart within the session timeout "
        "keeps the partitions without a rebalance; unique per worker", metavar="ID")
    group_protocol: str = setting(
        "classic", "rebalance protocol: 'classic' (cooperative-sticky) or 'consumer' (KIP-848, "
        "Kafka 4+)", choices=("classic", "consumer"))
    processors: list[str] = setting(
        [], "module path to import processors from (repeatable), e.g. myapp.processors",
        metavar="MODULE")
    ledger: str = setting(
        DEFAULT_LEDGER,
        "idempotency ledger URL: memory://, sqlite:///path, redis://..., postgresql://...",
        metavar="URL")
    ledger_retention: float = setting(
        DEFAULT_RETENTION_SECONDS, "keep done marks this many seconds, then prune them (7 days: "
        "longer than the 24 h webhook retry window)", metavar="SECONDS")
    ledger_lease: float = setting(
        DEFAULT_LEASE_SECONDS, "how long a claim of a crashed worker blocks the key (Redis, "
        "memory); must cover a batch", metavar="SECONDS")
    dlq_topic: str | None = setting(
        None, "dead-letter topic (default: the source topic + '.dlq')", metavar="TOPIC")
    metrics_address: str | None = setting(
        DEFAULT_METRICS_ADDRESS,
        "host:port of the /metrics and health HTTP server ('off' disables it)",
        metavar="HOST:PORT")
    console: str = setting(
        DEFAULT_CONSOLE, "the ops console at / and /status.json on the metrics address: 'on' or "
        "'off'; on a non-loopback address it needs --console-token", choices=("on", "off"))
    console_token: str | None = setting(
        None, "token the console asks for (Bearer header, or open /?token=TOKEN once); required "
        "for the console when the metrics address is not loopback", metavar="TOKEN")
    liveness_poll_stale: float = setting(
        DEFAULT_POLL_STALE_AFTER, "/healthz fails when the poll loop has not run for this long",
        metavar="SECONDS")
    liveness_commit_stall: float = setting(
        DEFAULT_COMMIT_STALL_AFTER, "/healthz fails when messages arrived this long ago and no "
        "commit advanced since (a stuck processor): keep it above the slowest batch",
        metavar="SECONDS")
    no_builtin_processors: bool = setting(
        False, "do not load the built-in processors (loyalty tiers, points, redemptions, "
        "messaging); WORKER_BUILTIN_PROCESSORS=false does the same")
    drain: bool = setting(
        False, "exit 0 once the group has consumed up to the end offsets that existed at start")
    max_events: int | None = setting(
        None, "exit 0 after processing this many events", metavar="N")
    kafka_config: dict[str, str] = setting(
        {}, "librdkafka property key=value (repeatable), e.g. security.protocol=SASL_SSL; also "
        "settable as KAFKA_<PROPERTY> env vars", metavar="KEY=VALUE")
    batch_size: int = setting(_ENGINE.batch_size, "events per consume() batch", metavar="N")
    commit_interval: float = setting(
        _ENGINE.commit_interval, "commit stored offsets at least every this many seconds",
        metavar="SECONDS")
    commit_every: int = setting(
        _ENGINE.commit_every, "commit stored offsets after this many events", metavar="N")
    shutdown_timeout: float = setting(
        _ENGINE.shutdown_timeout, "on SIGTERM/SIGINT: finish the in-flight batch, commit and "
        "exit within this bound", metavar="SECONDS")
    revoke_timeout: float = setting(
        _ENGINE.revoke_timeout, "on partition revoke: wait this long for the in-flight batch, "
        "then cancel it", metavar="SECONDS")
    max_in_flight: int = setting(
        DEFAULT_MAX_IN_FLIGHT, "async processors: calls in flight at once per worker (effects of "
        "one ordering key still run one at a time, in offset order)", metavar="N")
    max_outage: float | None = setting(
        None, "a destination (the system a processor calls) unavailable this long: the events "
        "waiting for it are dead-lettered as 'destination_unavailable' (replay them with "
        "`dlq replay --error-class destination_unavailable` once it is back); unset: they "
        "wait as long as it takes, with consumption paused", metavar="SECONDS")
    park_after: float = setting(
        DEFAULT_PARK_AFTER, "async processors with overlapping batches: a destination "
        "unavailable this long parks the events waiting for it (no dead letter): their "
        "partition's offset is held there and it is read again when the destination can be "
        "probed, so the other destinations keep their rate; 0: they wait in memory (see "
        "docs/processors.md, 'Parked events')", metavar="SECONDS")
    retry_attempts: int | None = setting(
        None, "attempts per processor call before dead-lettering (for processors that keep the "
        "library default retry policy)", metavar="N")
    retry_backoff: float | None = setting(
        None, "first retry delay in seconds (doubles per attempt)", metavar="SECONDS")
    retry_max_backoff: float | None = setting(
        None, "longest retry delay in seconds", metavar="SECONDS")
    on_failure: str | None = setting(
        None, "when retries run out: 'dead_letter' the event, or 'stop' the worker (exit 3); "
        "overrides every processor's own choice", choices=("dead_letter", "stop"))
    processing_guarantee: str = setting(
        ProcessingGuarantee.AT_LEAST_ONCE.value, "'at-least-once', or 'exactly-once': emitted "
        "records (ctx.emit) and consumed offsets commit together in Kafka transactions "
        "(read_committed consumers see one record per event id; batches never overlap; give "
        "each worker its own --group-instance-id; see docs/processors.md)",
        choices=tuple(g.value for g in ProcessingGuarantee))
    transaction_interval: float = setting(
        _ENGINE.transaction_interval, "exactly-once mode: seconds a transaction stays open for "
        "more batches before it commits (0: one per batch); longer means fewer transaction "
        "round trips, and more read again after an abort", metavar="SECONDS")
    unmatched: str = setting(
        "skip", "events whose type matches no processor: 'skip' (commit past) or 'dead_letter'",
        choices=("skip", "dead_letter"))
    dlq_max_share: float = setting(
        _ENGINE.dlq_max_share, "DLQ guardrail: stop (exit 4) when more than this share of the "
        "last --dlq-window events were dead-lettered (1 disables)", metavar="SHARE")
    dlq_window: int = setting(
        _ENGINE.dlq_window, "DLQ guardrail window, in events", metavar="N")

    def consumer_config(self) -> dict[str, Any]:
        """librdkafka properties for the consumer (validated; raises ConfigError)."""
        return build_consumer_config(
            self.bootstrap_servers, self.group, self.kafka_config,
            group_instance_id=self.group_instance_id, group_protocol=self.group_protocol)


class Kind(enum.Enum):
    """How a setting is read from a flag or env var (from its type in `Settings`)."""

    TEXT = "text"
    INT = "int"  # a positive whole number
    FLOAT = "float"  # a non-negative number
    FLAG = "flag"  # a flag without a value; true/false in the env
    LIST = "list"  # a repeatable flag; comma-separated in the env
    CHOICE = "choice"


_KINDS: dict[Any, Kind] = {str: Kind.TEXT, int: Kind.INT, float: Kind.FLOAT, bool: Kind.FLAG,
                           list: Kind.LIST, dict: Kind.LIST}


@dataclass(frozen=True, slots=True)
class Option:
    """One field of `Settings` as the command line and the environment see it."""

    name: str  # the Settings field
    flag: str
    kind: Kind
    doc: _Doc
    spec: dataclasses.Field[Any]

    @property
    def dest(self) -> str:
        """The argparse attribute of the flag."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "WORKER_" + self.dest.upper()

    def default(self) -> Any:
        """The field's default (a fresh copy of a list or dict)."""
        if self.spec.default_factory is not dataclasses.MISSING:
            return self.spec.default_factory()
        return self.spec.default


def _kind(hint: Any, doc: _Doc) -> Kind:
    if doc.choices:
        return Kind.CHOICE
    if isinstance(hint, types.UnionType):  # `X | None`
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return _KINDS[typing.get_origin(hint) or hint]


def _options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(Settings)
    out = []
    for spec in dataclasses.fields(Settings):
        doc = spec.metadata[_DOC]
        flag = doc.flag or "--" + spec.name.replace("_", "-")
        out.append(Option(spec.name, flag, _kind(hints[spec.name], doc), doc, spec))
    return tuple(out)


# The run settings in flag order: what add_arguments, from_args and markdown_table iterate.
OPTIONS: tuple[Option, ...] = _options()


def default_text(value: Any) -> str:
    """A default as --help and the README show it ('unset' for none, lists comma-separated)."""
    if value is None or (isinstance(value, (str, list, dict)) and not value):
        return "unset"
    if isinstance(value, list):
        return ",".join(value)
    return f"{value}"


def markdown_table() -> str:
    """The README's configuration table (`python -m worker.settings --markdown` prints it)."""
    lines = ["| flag | env | default | meaning |", "|---|---|---|---|"]
    for opt in OPTIONS:
        choices = "{" + ",".join(opt.doc.choices) + "}" if opt.doc.choices else ""
        value = opt.doc.metavar or choices
        flag = f"`{opt.flag} {value}`" if value else f"`{opt.flag}`"
        default = default_text(opt.default())
        if default != "unset":
            default = f"`{default}`"
        meaning = opt.doc.help.replace("|", "\\|").replace("<", "&lt;")
        lines.append(f"| {flag} | `{opt.env}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"
