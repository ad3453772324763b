"""`activity-worker types`: the known event types, their family and typed-ness."""

from __future__ import annotations

import argparse
import sys

import msgspec

from worker.events.registry import DATA_TYPES
from worker.events.types import FAMILIES, EventType

HELP = "List the 74 known CustomerActivity types with their family and typed data schema."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.add_argument("--family", help="only the types of this family (e.g. order, messaging)")


def run(args: argparse.Namespace) -> int:
    rows = [
        {
            "type": t.value,
            "family": FAMILIES[t.value],
            "typed": t.value in DATA_TYPES,
            "data": DATA_TYPES[t.value].__name__ if t.value in DATA_TYPES else None,
        }
        for t in EventType
        if args.family is None or FAMILIES[t.value] == args.family
    ]
    if args.family is not None and not rows:
        families = ", ".join(sorted(set(FAMILIES.values())))
        print(f"error: unknown family {args.family!r}; use one of: {families}", file=sys.stderr)
        return 2
    out = sys.stdout
    if args.json:
        out.write(msgspec.json.encode(rows).decode() + "\n")
        return 0
    w_type = max(len(r["type"]) for r in rows)  # type: ignore[arg-type]
    w_fam = max(len(r["family"]) for r in rows)  # type: ignore[arg-type]
    out.write(f"{'TYPE':<{w_type}}  {'FAMILY':<{w_fam}}  TYPED DATA\n")
    for r in rows:
        typed = r["data"] if r["typed"] else "no (no published shape: data is a dict)"
        out.write(f"{r['type']:<{w_type}}  {r['family']:<{w_fam}}  {typed}\n")
    typed_count = sum(1 for r in rows if r["typed"])
    out.write(f"\n{len(rows)} types, {typed_count} with a typed data schema\n")
    return 0
