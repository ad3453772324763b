"""The `activity-worker` command. Each subcommand lives in `worker/commands/<name>.py` and
exports `HELP` (its description), `add_arguments(parser)` and `run(args) -> int` (the exit
code). Only the chosen subcommand's module is imported: `activity-worker --help` imports no
subcommand at all (its one-line summaries are below), so help and small commands start fast."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker.errors import ConfigError, WorkerError

# name -> one-line summary for `activity-worker --help` (the module is worker.commands.<name>)
COMMANDS: dict[str, str] = {
    "run": "consume events and run the processors on them (the worker)",
    "ingress": "receive Voucherify webhooks and store them in Kafka before answering",
    "validate": "check a JSON Lines file of events; a verdict per bad line",
    "generate": "realistic events of all 74 types, to stdout or a topic",
    "types": "the 74 known event types, their family and typed schema",
    "routes": "which processors run for which event types",
    "processors": "the loaded processors, their patterns and key scope",
    "report": "a summary of the built-in read models",
    "topics": "create the source and dead-letter topics",
    "dlq": "look into a dead-letter topic and replay it",
    "status": "the consumer group from the broker's view: members, partitions, lag, DLQ",
    "schemas": "write (or --check) the JSON Schema files",
    "kafka": "a local Kafka broker for development (up, down, status)",
}


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv` (the top-level parser has no option taking a value)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the subcommand `argv` names is imported and fully built (all of
    them when `argv` is None)."""
    parser = argparse.ArgumentParser(
        prog="activity-worker",
        description="Consume Voucherify customer activity events from Kafka and run idempotent "
        "processors on them, exactly once per effect.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None if argv is None else _chosen(argv)
    for name, summary in COMMANDS.items():
        if argv is not None and name != chosen:
            sub.add_parser(name, help=summary)
            continue
        module = importlib.import_module(f"worker.commands.{name}")
        p = sub.add_parser(name, help=summary, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args))
    except ConfigError as exc:  # settings that cannot work: one sentence, no traceback
        sys.stderr.write(f"activity-worker {args.command}: {exc}\n")
        return 2
    except WorkerError as exc:  # e.g. no broker answered
        sys.stderr.write(f"activity-worker {args.command}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `activity-worker routes | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
