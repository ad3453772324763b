"""`activity-worker validate FILE|-`: check a JSON Lines file of events, one per line."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import IO, Any

import msgspec

from worker.errors import EventDecodeError
from worker.events import decode_event
from worker.events.envelope import check_utf8
from worker.events.types import KNOWN_TYPES

HELP = "Validate a JSON Lines file of events (or - for stdin); exit 1 if any line is invalid."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="JSON Lines file, one event per line; - reads stdin"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='JSON Lines output: one object per invalid line, then one {"summary": ...}',
    )
    parser.add_argument(
        "--max-errors",
        type=int,
        default=0,
        metavar="N",
        help="print at most N invalid lines (all are still counted); 0 = no limit",
    )


class _Peek(msgspec.Struct):
    id: Any = None
    type: Any = None


_peek_decoder = msgspec.json.Decoder(_Peek)


def _peek(line: bytes) -> tuple[str | None, str | None]:
    """Best-effort (id, type) of a bad line, for the report (only on the error path)."""
    try:
        peek = _peek_decoder.decode(line)
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError):
        return None, None
    return (
        peek.id if isinstance(peek.id, str) else None,
        peek.type if isinstance(peek.type, str) else None,
    )


def check_stream(
    stream: IO[bytes], out: IO[str], *, as_json: bool, max_errors: int
) -> dict[str, Any]:
    """Validate every line of `stream` (read line by line: memory stays flat), report invalid
    lines to `out` and return the summary."""
    by_type: Counter[str] = Counter()
    invalid_by_type: Counter[str] = Counter()
    by_class: Counter[str] = Counter()
    lines = valid = invalid = no_group = 0
    for lineno, line in enumerate(stream, 1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue  # blank lines are not events
        lines += 1
        type_ = None
        try:
            check_utf8(line)  # strict here: the hot path checks only the text it reads
            event = decode_event(line)
            type_ = event.type
            event.data  # noqa: B018 - decoding the typed data is the check
        except EventDecodeError as exc:
            invalid += 1
            by_class[exc.error_class] += 1
            eid, peeked_type = _peek(line)
            type_ = type_ or peeked_type
            invalid_by_type[type_ or "(no type)"] += 1
            if max_errors and invalid > max_errors:
                continue
            path, _, reason = exc.reason.partition(": ")
            if as_json:
                rec = {"line": lineno, "id": eid, "type": type_, "error_class": exc.error_class,
                       "path": path, "reason": reason}  # fmt: skip
                out.write(msgspec.json.encode(rec).decode() + "\n")
            else:
                where = f"line {lineno}" + (f" ({eid})" if eid else "")
                out.write(f"{where}: {path}: {reason} [{exc.error_class}]\n")
            continue
        valid += 1
        by_type[type_] += 1
        if event.group_id is None:
            no_group += 1
    unknown = sum(n for t, n in by_type.items() if t not in KNOWN_TYPES)
    return {
        "lines": lines,
        "valid": valid,
        "invalid": invalid,
        "unknown_types": unknown,
        "without_group_id": no_group,
        "by_type": dict(sorted(by_type.items())),
        "invalid_by_type": dict(sorted(invalid_by_type.items())),
        "invalid_by_error_class": dict(sorted(by_class.items())),
    }


def _print_table(summary: dict[str, Any], out: IO[str]) -> None:
    types = sorted(set(summary["by_type"]) | set(summary["invalid_by_type"]))
    width = max([len("TYPE"), *(len(t) for t in types)])
    out.write(f"\n{'TYPE':<{width}}  {'VALID':>8}  {'INVALID':>8}\n")
    for t in types:
        mark = "" if t in KNOWN_TYPES or t == "(no type)" else "  (unknown type)"
        out.write(
            f"{t:<{width}}  {summary['by_type'].get(t, 0):>8}  "
            f"{summary['invalid_by_type'].get(t, 0):>8}{mark}\n"
        )
    out.write(f"{'TOTAL':<{width}}  {summary['valid']:>8}  {summary['invalid']:>8}\n")
    if summary["invalid_by_error_class"]:
        classes = ", ".join(f"{k} {v}" for k, v in summary["invalid_by_error_class"].items())
        out.write(f"invalid by error class: {classes}\n")
    if summary["without_group_id"]:
        out.write(f"warning: {summary['without_group_id']} valid events have no group_id (fine: "
                  "each is its own group for idempotency keys)\n")
    verdict = "OK" if not summary["invalid"] else "INVALID"
    out.write(f"{verdict}: {summary['lines']} events, {summary['invalid']} invalid\n")


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        stream: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}; check the path", file=sys.stderr)
        return 2
    try:
        summary = check_stream(stream, out, as_json=args.json, max_errors=args.max_errors)
        if args.json:
            out.write(msgspec.json.encode({"summary": summary}).decode() + "\n")
        else:
            _print_table(summary, out)
        out.flush()
    except BrokenPipeError:  # `validate ... | head`: the reader left; the verdict still holds
        sys.stderr.close()
        return 1
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return 1 if summary["invalid"] else 0
