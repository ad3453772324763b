"""`activity-worker schemas`: regenerate (or check) the JSON Schema files in schemas/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worker.events.export import DEFAULT_DIR, drift, write_schemas

HELP = "Write the JSON Schema files of the envelope and each data family (or --check for drift)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR,
        help=f"output directory (default: ./{DEFAULT_DIR}, run at the top of a checkout)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the files differ from the code",
    )


def run(args: argparse.Namespace) -> int:
    if args.check:
        stale = drift(args.dir)
        if stale:
            print(
                f"schemas out of date in {args.dir}: {', '.join(stale)}; "
                "run `activity-worker schemas` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"schemas in {args.dir} are up to date")
        return 0
    names = write_schemas(args.dir)
    print(f"wrote {len(names)} schema files to {args.dir}")
    return 0
