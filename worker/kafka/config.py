"""librdkafka configuration for the worker's consumer and DLQ producer (the clients themselves
are made in `worker.kafka.clients`).

The engine's delivery guarantee rests on three settings that this module owns: offsets are
stored by the engine only after an event is fully handled (`enable.auto.offset.store=false`),
committed by the engine's policy (`enable.auto.commit=false`), and partitions move one at a
time on rebalance (cooperative-sticky, or the KIP-848 `consumer` protocol). Overrides that would
break them are refused with a `ConfigError` saying why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.errors import ConfigError

# Properties the KIP-848 protocol takes from the broker; librdkafka refuses them with
# group.protocol=consumer.
CLASSIC_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms",
                 "group.protocol.type")

# Properties that only make sense on a consumer; they are left out of the DLQ producer's config.
CONSUMER_ONLY_PREFIXES = ("group.", "enable.auto.", "auto.offset.reset", "auto.commit.",
                           "partition.assignment.strategy", "session.timeout.ms",
                           "heartbeat.interval.ms", "max.poll.interval.ms", "fetch.",
                           "isolation.level", "enable.partition.eof", "check.crcs",
                           "queued.", "coordinator.query.interval.ms", "consume.callback",
                           "offset.store.", "client.rack")

_TRUE = {"true", "1", "yes", "on"}


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in _TRUE


def build_consumer_config(
    bootstrap_servers: str,
    group_id: str,
    overrides: Mapping[str, str] | None = None,
    *,
    group_instance_id: str | None = None,
    group_protocol: str | None = None,
) -> dict[str, Any]:
    """The consumer's librdkafka properties: safe defaults, then `overrides` (validated).

    `overrides` are raw librdkafka properties (`--kafka-config`, `KAFKA_*` env).
    """
    props = dict(overrides or {})
    protocol = (group_protocol or props.get("group.protocol") or "classic").strip().lower()
    if protocol not in ("classic", "consumer"):
        raise ConfigError(f"group.protocol={protocol!r} is not supported: use 'classic' "
                          "(cooperative-sticky rebalancing) or 'consumer' (KIP-848).")
    for key in ("enable.auto.offset.store", "enable.auto.commit"):
        if key in props and _truthy(props[key]):
            raise ConfigError(
                f"{key}=true would let offsets be committed before their events are processed "
                f"(events could be lost on a crash); remove {key} — the worker stores and commits "
                "offsets itself (see --commit-interval / --commit-every).")
    if protocol == "consumer":
        bad = [k for k in CLASSIC_ONLY if k in props]
        if bad:
            raise ConfigError(
                f"{', '.join(bad)} cannot be set with group.protocol=consumer (KIP-848 takes "
                "them from the broker's group config); remove them or use "
                "group.protocol=classic.")
    strategy = props.get("partition.assignment.strategy")
    if strategy is not None and "cooperative-sticky" in strategy and "," in strategy:
        raise ConfigError("partition.assignment.strategy cannot mix cooperative-sticky with "
                          "eager assignors; set exactly one.")
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # Prefetch buffer: 16 MB (librdkafka's default is 64 MB) holds well over a second of
        # events at the worker's speed and keeps the process small (peak RSS goal < 250 MB).
        # With a smaller buffer the default 1 s fetch.queue.backoff.ms after the buffer fills
        # would starve the loop (measured: 7x slower), so back off 20 ms instead.
        "queued.max.messages.kbytes": 16384,
        "fetch.queue.backoff.ms": 20,
        # A broker that went away is tried again at most 1 s apart (the Java clients' default;
        # librdkafka's is 10 s). librdkafka asks who leads a partition again only while the old
        # leader's connection is DOWN, not while it waits out its reconnect backoff: with 10 s,
        # the partitions of a killed broker learned their new leader up to ~10 s after the
        # cluster had elected it (docs/cluster.md). The producers inherit it.
        "reconnect.backoff.max.ms": 1000,
    }
    if protocol == "classic":
        config["partition.assignment.strategy"] = "cooperative-sticky"
    else:
        config["group.protocol"] = "consumer"
    if group_instance_id:
        config["group.instance.id"] = group_instance_id
    config.update(props)
    if protocol == "consumer":
        config["group.protocol"] = "consumer"
    # Always last: these two are the guarantee.
    config["enable.auto.commit"] = False
    config["enable.auto.offset.store"] = False
    return config


#: With batches overlapping (worker.types.BatchWindow) the order messages arrive in decides
#: which keys get work: librdkafka hands over a whole partition's fetch (up to 1 MiB, thousands
#: of messages) at a time, so the other partitions' keys sit idle behind it. Smaller
#: per-partition fetches interleave the partitions (measured, 1,000 keys at 100 ms on 6
#: partitions: 1 MiB 2,950/s, 64 KiB 5,800/s, 16 KiB 7,200/s).
INTERLEAVED_FETCH_BYTES = 16384


def interleaving_partitions(config: Mapping[str, Any]) -> dict[str, Any]:
    """The consumer settings when the engine asks for partitions interleaved (it overlaps
    batches: worker.engine.consumer_port.ConsumerPort.open); an operator's own
    max.partition.fetch.bytes is kept."""
    out = dict(config)
    out.setdefault("max.partition.fetch.bytes", INTERLEAVED_FETCH_BYTES)
    return out


def producer_config(consumer_config: Mapping[str, Any]) -> dict[str, Any]:
    """The DLQ producer's properties: the consumer's connection and security settings (so SASL,
    OAUTHBEARER and mTLS carry over) without consumer-only ones, plus idempotence."""
    config = {
        k: v for k, v in consumer_config.items()
        if not k.startswith(CONSUMER_ONLY_PREFIXES) and not callable(v)
    }
    config["enable.idempotence"] = True
    config["acks"] = "all"
    config.setdefault("linger.ms", 5)
    return config


# Environment variables named KAFKA_* that belong to Kafka's own scripts, not to librdkafka.
_NOT_LIBRDKAFKA = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_HOME", "KAFKA_JVM_PERFORMANCE_OPTS",
                   "KAFKA_LOG4J_OPTS", "KAFKA_JMX_OPTS", "KAFKA_DEBUG", "KAFKA_GC_LOG_OPTS",
                   "KAFKA_CLUSTER_ID", "KAFKA_LOG_DIR", "KAFKA_VERSION", "KAFKA_LIBS",
                   "KAFKA_CLASSPATH",
                   # the local broker launcher's own settings (deploy/local/kafka)
                   "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_DATA_DIR", "KAFKA_HEAP",
                   "KAFKA_LIBS_DIR", "KAFKA_START_TIMEOUT", "KAFKA_RUNTIME", "KAFKA_TEST_IMAGE",
                   "KAFKA_NODES"}


def config_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`KAFKA_SASL_PASSWORD=x` → `{"sasl.password": "x"}` (lower case, `_` → `.`)."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith("KAFKA_") or name in _NOT_LIBRDKAFKA or value == "":
            continue
        out[name[len("KAFKA_"):].lower().replace("_", ".")] = value
    return out


def parse_pairs(pairs: list[str], source: str) -> dict[str, str]:
    """Parse `key=value` strings; `source` names where they came from, for the error."""
    out: dict[str, str] = {}
    for pair in pairs:
        pair = pair.strip()
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: {pair!r} is not key=value; write e.g. "
                              "--kafka-config security.protocol=SASL_SSL.")
        out[key.strip()] = value.strip()
    return out
