"""`activity-worker kafka up|down|status`: the local broker launcher (deploy/local/README.md)."""

from __future__ import annotations

import argparse

from worker.kafka import local_broker

HELP = "Run a local single-node Apache Kafka broker for development and tests (up, down, status)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    local_broker.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return local_broker.run(args)
