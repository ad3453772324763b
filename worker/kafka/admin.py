"""Small admin helpers: create topics (demo, tests, benchmarks) and read end offsets (drain
mode, lag)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from worker.errors import ConfigError, WorkerError
from worker.kafka.diagnose import Diagnosis, classify

# librdkafka's own log lines of the start-up check: the check reports the cause itself.
_QUIET = logging.getLogger(__name__ + ".librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class KafkaUnreachable(WorkerError):
    """No broker answered; the message says what was tried and what to check."""


def _admin(config: Mapping[str, Any], **extra: Any) -> Any:
    from worker.kafka.clients import new_admin

    logger = extra.pop("logger", None)
    return new_admin(config, logger=logger, **extra)


def _rank(d: Diagnosis) -> int:
    return 0 if d.is_settings_problem else 1


def checked_metadata(config: Mapping[str, Any], timeout: float = 10.0) -> Any:
    """Cluster metadata, or a clear error: ConfigError when the broker refuses the worker's
    credentials or certificates (retrying cannot help), KafkaUnreachable when no broker answered
    within `timeout`. Fails as soon as librdkafka reports an authentication or TLS error."""
    from confluent_kafka import KafkaException

    seen: list[Diagnosis] = []
    last: list[str] = []

    def on_error(err: Any) -> None:
        d = classify(err.name(), err.str(), config)
        if d is not None:
            seen.append(d)
        last[:] = [err.str()]

    admin = _admin(config, error_cb=on_error, logger=_QUIET)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException:
            admin.poll(0)  # serves error_cb: the cause of the failure
        settings_problems = [d for d in seen if d.is_settings_problem]
        if settings_problems:
            raise ConfigError(settings_problems[0].message)
        if time.monotonic() >= deadline:
            break
    if seen:
        raise KafkaUnreachable(min(seen, key=_rank).message)
    raise KafkaUnreachable(
        f"no Kafka broker answered at {config.get('bootstrap.servers')} within {timeout:.0f}s"
        + (f" ({last[0]})" if last else "") + "; check --bootstrap-servers and the network.")


#: `replication_factor` that lets the broker choose (its `default.replication.factor`).
BROKER_DEFAULT = -1


def ensure_topics(config: Mapping[str, Any], topics: Mapping[str, int], *,
                  replication_factor: int = BROKER_DEFAULT,
                  topic_config: Mapping[str, Mapping[str, str]] | None = None,
                  timeout: float = 30.0,
                  progress: Callable[[str], None] | None = None) -> list[str]:
    """Create each topic with the given partition count unless it exists already, and return
    once every broker knows the topics it created (`wait_until_known`).

    `replication_factor` -1 is the broker's default; `topic_config` maps a topic name to its
    topic configs (`retention.ms`, `min.insync.replicas`, ...), applied to new topics only.
    Returns one sentence per existing topic whose partition count (or, when one was asked,
    replication factor) differs from what was asked: it is kept as it is. `progress` gets a
    sentence when the wait for the brokers takes more than a moment."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    metadata = checked_metadata(config, timeout)  # a clear error if refused
    existing = metadata.topics
    differs: list[str] = []
    for name, partitions in topics.items():
        md = existing.get(name)
        if md is None:
            continue
        have = len(md.partitions)
        replicas = {len(p.replicas) for p in md.partitions.values()}
        if have != partitions:
            differs.append(f"topic {name!r} exists with {have} partitions, not {partitions}: "
                           "kept as it is")
        if replication_factor != BROKER_DEFAULT and replicas != {replication_factor}:
            shown = "/".join(str(r) for r in sorted(replicas))
            differs.append(f"topic {name!r} exists with replication factor {shown}, not "
                           f"{replication_factor}: kept as it is")
    admin = _admin(config)
    wanted = [NewTopic(name, num_partitions=n, replication_factor=replication_factor,
                       config=dict((topic_config or {}).get(name, {})))
              for name, n in topics.items() if name not in existing]
    if not wanted:
        return differs
    futures = admin.create_topics(wanted, request_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result(timeout)
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise WorkerError(f"could not create topic {name!r}: {exc}") from None
    wait_until_known(config, list(futures), timeout=timeout, progress=progress)
    return differs


#: How long `wait_until_known` waits before it says what it is waiting for.
_QUIET_WAIT_S = 2.0


def wait_until_known(config: Mapping[str, Any], topics: Iterable[str], *, timeout: float = 30.0,
                     progress: Callable[[str], None] | None = None) -> None:
    """Return once every live broker of the cluster knows each of `topics`.

    The controller accepts a new topic before the brokers have it in their metadata (in KRaft
    each broker replays the controller's log at its own pace), so a request that reaches a
    lagging broker just after a creation fails with UNKNOWN_TOPIC_OR_PART. Each broker is asked
    in turn: a DescribeConfigs that names a broker is sent to that broker, and it answers for a
    topic only once its metadata has it. Raises WorkerError naming the brokers and topics still
    missing after `timeout` seconds."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    names = sorted(set(topics))
    if not names:
        return
    admin = _admin(config)
    deadline = time.monotonic() + timeout
    brokers = admin.list_topics(timeout=timeout).brokers
    pending = {b: set(names) for b in brokers}
    last: dict[int, str] = {}
    told = False
    started = time.monotonic()
    while True:
        for broker in [b for b, missing in pending.items() if missing]:
            resources = [ConfigResource(ConfigResource.Type.BROKER, str(broker))] + [
                ConfigResource(ConfigResource.Type.TOPIC, t) for t in sorted(pending[broker])]
            left = max(0.5, min(5.0, deadline - time.monotonic()))
            for resource, fut in admin.describe_configs(resources,
                                                        request_timeout=left).items():
                if resource.restype != ConfigResource.Type.TOPIC:
                    continue  # only there to send the request to `broker`
                try:
                    fut.result(left + 1.0)
                except Exception as exc:
                    err = exc.args[0] if exc.args else None
                    if getattr(err, "code", lambda: None)() != \
                            KafkaError.TOPIC_AUTHORIZATION_FAILED:
                        last[broker] = str(err or exc)
                        continue
                    # Not allowed to describe its configs: this broker cannot tell, so it is
                    # not waited for (the broker checks the permission before the topic).
                pending[broker].discard(resource.name)
        missing = {b: t for b, t in pending.items() if t}
        if not missing:
            return
        waited = time.monotonic() - started
        if not told and progress is not None and waited >= _QUIET_WAIT_S:
            told = True
            progress(f"waiting for broker(s) {', '.join(map(str, sorted(missing)))} to know "
                     f"the new topic(s) (up to {timeout:.0f}s)")
        if time.monotonic() >= deadline:
            detail = "; ".join(
                f"broker {b} ({brokers[b].host}:{brokers[b].port}) does not know "
                f"{', '.join(sorted(t))}" + (f" (last answer: {last[b]})" if b in last else "")
                for b, t in sorted(missing.items()))
            raise WorkerError(
                f"the topic(s) were created, but not every broker knew them within "
                f"{timeout:.0f}s: {detail}. Check that those brokers are up and in sync with "
                "the controller (their logs), then run the command again: existing topics "
                "are kept.")
        time.sleep(0.1)


def topic_partitions(consumer: Any, topics: Iterable[str], timeout: float = 10.0
                     ) -> list[tuple[str, int]]:
    """Every (topic, partition) of `topics`, from the consumer's metadata."""
    out: list[tuple[str, int]] = []
    for topic in topics:
        md = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if md is None or md.error is not None:
            raise WorkerError(f"topic {topic!r} does not exist or cannot be described "
                              f"({getattr(md, 'error', None)}); create it first")
        out.extend((topic, p) for p in sorted(md.partitions))
    return out


def watermarks(consumer: Any, partitions: Iterable[tuple[str, int]], *, cached: bool = False,
               timeout: float = 10.0) -> dict[tuple[str, int], tuple[int, int]]:
    """(low, high) per partition. `cached=True` asks no broker (values from recent fetches)."""
    from confluent_kafka import TopicPartition

    out: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, part in partitions:
        if cached:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, part), cached=True)
        else:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, part),
                                                       timeout=timeout)
        out[(topic, part)] = (int(low), int(high))
    return out


def committed_offsets(consumer: Any, partitions: Iterable[tuple[str, int]],
                      timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """The group's committed offset per partition (negative: none committed)."""
    from confluent_kafka import TopicPartition

    tps = [TopicPartition(t, p) for t, p in partitions]
    if not tps:
        return {}
    return {(tp.topic, tp.partition): int(tp.offset)
            for tp in consumer.committed(tps, timeout=timeout)}


def topic_max_bytes(config: Mapping[str, Any], topics: Iterable[str],
                    timeout: float = 10.0) -> dict[str, int]:
    """Each topic's `max.message.bytes` (its own setting or the broker's default)."""
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    admin = _admin(config)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics]
    out: dict[str, int] = {}
    for resource, fut in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            entry = fut.result(timeout)["max.message.bytes"]
        except Exception as exc:
            raise WorkerError(f"could not read the config of topic {resource.name!r}: "
                              f"{exc}") from None
        out[resource.name] = int(entry.value)
    return out


def missing_topics(config: Mapping[str, Any], topics: Iterable[str],
                   timeout: float = 10.0) -> list[str]:
    """The names among `topics` that the cluster does not have (asks without creating)."""
    md = checked_metadata(config, timeout)
    return [t for t in topics if t not in md.topics]
