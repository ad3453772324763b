"""`activity-worker processors`: list the loaded processors."""

from __future__ import annotations

import argparse
import sys

from worker.errors import ConfigError
from worker.processors.discovery import add_discovery_arguments, load_from_args

HELP = ("List the loaded processors (built-ins, entry points, --processors modules) with their "
        "patterns, idempotency key scope and failure policy, in fan-out order.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_discovery_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        procs = load_from_args(args)
        from worker.processing.routing import Router

        Router(procs, warn_unused=False)  # validates patterns and names exactly as the worker does
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not procs:
        print("no processors loaded; name a module with --processors MODULE")
        return 0
    rows = [("#", "NAME", "PATTERNS", "KEY", "ON FAILURE", "RETRIES", "MODULE")]
    for index, p in enumerate(procs, 1):
        rows.append((str(index), p.name, " ".join(p.patterns), p.key_scope, p.on_failure,
                     str(p.retry.max_attempts), p.module))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    for p in procs:
        if p.description:
            print(f"\n{p.name}: {p.description}", end="")
    print()
    return 0
