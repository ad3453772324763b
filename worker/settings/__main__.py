"""`python -m worker.settings --markdown`: print the README's configuration table, made from the
settings table (tests/engine/test_settings_table.py checks the README holds exactly this)."""

from __future__ import annotations

import argparse
import sys

from worker.settings.table import markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.settings",
                                     description="Print the run settings table.")
    parser.add_argument("--markdown", action="store_true", required=True,
                        help="the README's configuration table, in Markdown")
    parser.parse_args(argv)
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
