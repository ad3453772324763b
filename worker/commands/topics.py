"""`activity-worker topics create`: create the source and dead-letter topics (idempotent)."""

from __future__ import annotations

import argparse
import os
import sys

from worker.errors import ConfigError
from worker.settings import add_client_arguments, client_config

HELP = "create topics (e.g. the source topic and its dead-letter topic); existing ones are kept"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create each TOPIC unless it exists")
    create.add_argument("topics", nargs="+", metavar="TOPIC")
    create.add_argument("--partitions", type=int,
                        default=int(os.environ.get("WORKER_PARTITIONS", "4")),
                        help="partitions per new topic [env WORKER_PARTITIONS; default 4]")
    create.add_argument("--replication-factor", type=int,
                        default=int(os.environ.get("WORKER_REPLICATION_FACTOR", "-1")),
                        metavar="N",
                        help="replicas per partition of a new topic; -1 lets the broker choose "
                        "(its default.replication.factor) [env WORKER_REPLICATION_FACTOR; "
                        "default -1]")
    create.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        dest="topic_config",
                        help="topic config for new topics (repeatable), e.g. "
                        "min.insync.replicas=2 or retention.ms=1209600000")
    create.add_argument("--with-dlq", action="store_true",
                        help="also create TOPIC.dlq for each TOPIC")
    add_client_arguments(create)


def _topic_config(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--config {pair!r}: expected KEY=VALUE, e.g. retention.ms=86400000")
        out[key.strip()] = value.strip()
    return out


#: How much larger a dead-letter topic's `max.message.bytes` is than its source topic's: room for
#: the worker's headers (bounded: reasons are cut at 1,000 characters) on top of the original
#: record. A letter that still does not fit is written shrunk (worker.kafka.dead_letter_format).
DLQ_HEADROOM_BYTES = 64 * 1024


def run(args: argparse.Namespace) -> int:
    from worker.kafka.admin import ensure_topics, topic_max_bytes
    from worker.kafka.dead_letter_producer import default_dlq_topic

    names = list(args.topics)
    if args.partitions < 1 or args.replication_factor == 0 or args.replication_factor < -1:
        raise ConfigError("--partitions must be >= 1 and --replication-factor >= 1 (or -1 for "
                          "the broker's default)")
    settings = _topic_config(args.topic_config)
    config = client_config(args.bootstrap_servers, args.kafka_config)

    def progress(sentence: str) -> None:
        print(sentence, file=sys.stderr, flush=True)

    differs = ensure_topics(config, dict.fromkeys(names, args.partitions),
                            replication_factor=args.replication_factor,
                            topic_config=dict.fromkeys(names, settings), progress=progress)
    if args.with_dlq:
        limits = topic_max_bytes(config, names)
        dlqs = {default_dlq_topic(t): limits[t] + DLQ_HEADROOM_BYTES for t in names}
        differs += ensure_topics(
            config, dict.fromkeys(dlqs, args.partitions),
            replication_factor=args.replication_factor,
            topic_config={d: {**settings, "max.message.bytes": str(n)} for d, n in dlqs.items()},
            progress=progress)
        have = topic_max_bytes(config, dlqs)
        differs += [f"dead-letter topic {d!r} has max.message.bytes {have[d]}, less than the "
                    f"{n} its source topic needs (dead letters that do not fit are written "
                    f"shrunk); raise it: kafka-configs --alter --entity-type topics "
                    f"--entity-name {d} --add-config max.message.bytes={n}"
                    for d, n in dlqs.items() if have[d] < n]
        names += list(dlqs)
    for sentence in differs:
        print(f"warning: {sentence}", file=sys.stderr)
    print(f"topics ready on {config['bootstrap.servers']}: {', '.join(names)}")
    return 0
