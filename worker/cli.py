"""The `activity-worker` command. Each subcommand lives in `worker/commands/<name>.py` and
exports `HELP` (one line), `add_arguments(parser)` and `run(args) -> int` (the exit code).
Subcommands are imported only when chosen, so `--help` and small commands start fast."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker.errors import ConfigError, WorkerError

# name -> module; one line per subcommand.
COMMANDS: dict[str, str] = {
    "run": "worker.commands.run",
    "validate": "worker.commands.validate",
    "generate": "worker.commands.generate",
    "types": "worker.commands.types",
    "routes": "worker.commands.routes",
    "processors": "worker.commands.processors",
    "report": "worker.commands.report",
    "topics": "worker.commands.topics",
    "dlq": "worker.commands.dlq",
    "schemas": "worker.commands.schemas",
    "kafka": "worker.commands.kafka",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="activity-worker",
        description="Consume Voucherify customer activity events from Kafka and run idempotent "
        "processors on them, exactly once per effect.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
