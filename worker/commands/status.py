"""`activity-worker status`: the consumer group as the broker sees it — members, who holds which
partition, committed and end offsets, lag in events and in time, the dead-letter topics' depth.
A table, `--json` for scripts, `--watch` to refresh; exit 3 when the group has no members or a
lag above `--max-lag` / `--max-lag-seconds`, so it can be a runbook's check."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import TextIO

from worker.errors import ConfigError
from worker.group_status import GroupStatus, StatusExit, open_transactions, problems, to_json
from worker.group_status import format_age as age
from worker.settings import DEFAULT_GROUP, add_client_arguments, client_config

HELP = ("the consumer group from the broker's view: members and their partitions, committed and "
        "end offsets, lag in events and in time, dead-letter depth; exit 3 when the group has "
        "no members or lags above --max-lag / --max-lag-seconds")

WATCH_DEFAULT_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=os.environ.get("WORKER_GROUP", DEFAULT_GROUP),
                        metavar="GROUP",
                        help=f"consumer group [env WORKER_GROUP; default {DEFAULT_GROUP}]")
    parser.add_argument("--topic", action="append", default=None, metavar="TOPIC",
                        help="topic to show (repeatable) [env WORKER_TOPIC, comma-separated; "
                        "default: every topic the group committed to or is assigned]")
    parser.add_argument("--dlq-topic", action="append", default=None, metavar="TOPIC",
                        help="dead-letter topic whose depth to show (repeatable) [env "
                        "WORKER_DLQ_TOPIC; default: each topic + '.dlq']")
    parser.add_argument("--json", action="store_true",
                        help="print the status as one JSON document (one per line with --watch)")
    parser.add_argument("--watch", nargs="?", type=float, const=WATCH_DEFAULT_SECONDS,
                        default=None, metavar="SECONDS",
                        help=f"refresh every SECONDS (default {WATCH_DEFAULT_SECONDS:g}) until "
                        "Ctrl-C; the exit code is the last refresh's")
    parser.add_argument("--max-lag", type=int, default=None, metavar="EVENTS",
                        help="exit 3 when a partition lags more than this many events")
    parser.add_argument("--max-lag-seconds", type=float, default=None, metavar="SECONDS",
                        help="exit 3 when a partition's next unconsumed event is older than this")
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from worker.kafka.group_view import GroupInspector

    topics = args.topic or [t for t in os.environ.get("WORKER_TOPIC", "").split(",") if t]
    env_dlq = os.environ.get("WORKER_DLQ_TOPIC")
    dlq = args.dlq_topic or ([env_dlq] if env_dlq else None)
    if args.watch is not None and args.watch <= 0:
        raise ConfigError(f"--watch {args.watch:g}: give a positive number of seconds")
    if args.watch is not None:
        # --watch ends with Ctrl-C (SIGINT), even when started from a shell that ignores it
        # for its background jobs (Python then installs no KeyboardInterrupt of its own)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    inspector = GroupInspector(client_config(args.bootstrap_servers, args.kafka_config))
    code: StatusExit | None = None
    try:
        while True:
            status = inspector.status(args.group, topics, dlq)
            found = problems(status, args.max_lag, args.max_lag_seconds)
            if args.json:
                sys.stdout.write(to_json(status).decode() + "\n")
            else:
                if args.watch is not None and sys.stdout.isatty():
                    sys.stdout.write("\033[H\033[2J")
                print_table(status, sys.stdout)
            for sentence in found:
                print(f"status: {sentence}", file=sys.stderr)
            sys.stdout.flush()
            code = StatusExit.UNHEALTHY if found else StatusExit.OK
            if args.watch is None:
                return int(code)
            time.sleep(args.watch)
    except KeyboardInterrupt:  # --watch ends with Ctrl-C: the last refresh's verdict
        if code is None:
            raise
        return int(code)
    finally:
        inspector.close()


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                  + "\n")


def print_table(status: GroupStatus, out: TextIO) -> None:
    taken = time.strftime("%H:%M:%S", time.localtime(status.taken_at))
    out.write(f"group {status.group}  state {status.state}  protocol {status.protocol}"
              f"{f' ({status.assignor})' if status.assignor else ''}  "
              f"members {len(status.members)}  lag {status.total_lag} events, "
              f"{age(status.max_lag_seconds)}  at {taken}\n\n")
    if status.members:
        # A consumer-protocol (KIP-848) member has a target too: where its partitions go.
        targets = any(m.target is not None for m in status.members)
        _table([["MEMBER", "CLIENT", "HOST", "INSTANCE", "PARTITIONS"]
                + (["TARGET"] if targets else [])] + [
            [m.member_id[-12:], m.client_id, m.host, m.instance_id or "-", m.held_text]
            + ([m.target_text] if targets else [])
            for m in status.members], out)
        out.write("\n")
    if status.partitions:
        rows = [["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG TIME", "CLIENT"]]
        for p in status.partitions:
            owner = status.owner(p.member_id)
            rows.append([p.topic, str(p.partition), "-" if p.committed is None else
                         str(p.committed), str(p.end), str(p.lag), age(p.lag_seconds),
                         owner.client_id if owner else "-"])
        _table(rows, out)
        out.write("\n")
    for sentence in open_transactions(status):
        out.write(f"{sentence}\n")
    for d in status.dlq:
        out.write(f"dead letters  {d.topic}: "
                  f"{d.depth if d.exists else 'no such topic'}\n")
