"""`activity-worker routes [TYPE]`: which processors receive which event types."""

from __future__ import annotations

import argparse
import sys

from worker.errors import ConfigError
from worker.events.types import KNOWN_TYPES
from worker.processing.routing import Router
from worker.processors.discovery import add_discovery_arguments, load_from_args

HELP = ("Show processors x patterns x the known event types each matches, or, given a TYPE, "
        "which processors would run for it, in order.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("type", nargs="?", metavar="TYPE",
                        help="an event type, e.g. customer.loyalty.tier.upgraded")
    add_discovery_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        router = Router(load_from_args(args), warn_unused=False)  # printed below
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.type is not None:
        return _explain(router, args.type)
    for proc, pattern in router.unused_patterns():
        print(f"warning: processor {proc.name!r}: pattern {pattern!r} matches none of the "
              f"{len(KNOWN_TYPES)} known types (a typo?)", file=sys.stderr)
    if not router.processors:
        print("no processors loaded; name a module with --processors MODULE")
        return 0
    covered: set[str] = set()
    for index, proc in enumerate(router.processors, 1):
        print(f"{index}. {proc.name}  (key: {proc.key_scope}, module: {proc.module})")
        for pattern in proc.patterns:
            types = router.matching_types(pattern, proc.name)
            covered.update(types)
            print(f"   {pattern}  -> {len(types)} known type(s)")
            for type_ in types:
                print(f"      {type_}")
    unrouted = [t for t in KNOWN_TYPES if t not in covered]
    print(f"\n{len(KNOWN_TYPES) - len(unrouted)} of {len(KNOWN_TYPES)} known types are routed; "
          f"{len(unrouted)} match no processor (skipped or dead-lettered, per setting):")
    for type_ in unrouted:
        print(f"   {type_}")
    return 0


def _explain(router: Router, type_: str) -> int:
    procs = router.resolve(type_)
    known = "" if type_ in KNOWN_TYPES else "  (not one of the known types)"
    print(f"{type_}{known}")
    if not procs:
        print("   no processor matches: the worker skips it, or dead-letters it if unmatched "
              "events are set to go to the dead-letter topic")
        return 0
    for index, proc in enumerate(procs, 1):
        patterns = [p for p, cp in zip(proc.patterns, router.compiled[proc.name], strict=True)
                    if cp.matches(type_)]
        print(f"   {index}. {proc.name}  (pattern {', '.join(patterns)}; key: {proc.key_scope})")
    return 0
