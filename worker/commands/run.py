"""`activity-worker run`: consume, process, dead-letter and commit until stopped."""

from __future__ import annotations

import argparse

from worker.settings import add_arguments as _add_arguments
from worker.settings import from_args

HELP = ("Consume customer activity events and run the processors on them (each flag can also "
        "be set by the env var WORKER_<FLAG>; librdkafka properties by KAFKA_<PROPERTY>). "
        "Exit codes: 0 ok, 1 error, 2 bad settings, 3 a processor failed with "
        "on_failure=stop, 4 DLQ guardrail tripped, 5 shutdown timed out, 128+N killed by "
        "a second signal N.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Settings and start-up errors (ConfigError: exit 2, WorkerError: exit 1) become one
    sentence in worker.cli.main, as for every command."""
    settings = from_args(args)
    from worker.app import run as run_app

    return run_app(settings)
