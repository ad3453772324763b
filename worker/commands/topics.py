"""`activity-worker topics create`: create the source and dead-letter topics (idempotent)."""

from __future__ import annotations

import argparse
import os

from worker.settings import add_client_arguments, client_config

HELP = "create topics (e.g. the source topic and its dead-letter topic); existing ones are kept"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create each TOPIC unless it exists")
    create.add_argument("topics", nargs="+", metavar="TOPIC")
    create.add_argument("--partitions", type=int,
                        default=int(os.environ.get("WORKER_PARTITIONS", "4")),
                        help="partitions per new topic [env WORKER_PARTITIONS; default 4]")
    create.add_argument("--with-dlq", action="store_true",
                        help="also create TOPIC.dlq for each TOPIC")
    add_client_arguments(create)


def run(args: argparse.Namespace) -> int:
    from worker.kafka.admin import ensure_topics
    from worker.kafka.dlq import default_dlq_topic

    names = list(args.topics)
    if args.with_dlq:
        names += [default_dlq_topic(t) for t in args.topics]
    config = client_config(args.bootstrap_servers, args.kafka_config)
    ensure_topics(config, dict.fromkeys(names, args.partitions))
    print(f"topics ready on {config['bootstrap.servers']}: {', '.join(names)}")
    return 0
