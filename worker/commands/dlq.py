"""`activity-worker dlq show|replay`: what is in a dead-letter topic, and replaying it."""

from __future__ import annotations

import argparse
from collections import Counter

from worker.settings import add_client_arguments, client_config
from worker.vocabulary import ErrorClass

HELP = ("look into a dead-letter topic (show) and replay its letters to their source topic "
        "once the cause is fixed (replay)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="counts per error class and processor, and the first "
                          "letters (reads from the beginning, commits nothing)")
    show.add_argument("dlq_topic", metavar="DLQ_TOPIC")
    show.add_argument("--limit", type=int, default=20, help="letters to print (default 20)")
    add_client_arguments(show)
    rep = sub.add_parser(
        "replay", help="re-produce letters (original key, value and headers) to their source "
        "topic or --to; resumable: its own group commits what was acknowledged",
        description="Re-produce each letter's original key, value and headers to its source "
        "topic (or --to), committing the replay group's offsets only after the records are "
        "acknowledged: a replay run again replays nothing twice. The ledger makes effects "
        "that already happened duplicates, so only what failed runs again.")
    rep.add_argument("dlq_topic", metavar="DLQ_TOPIC")
    rep.add_argument("--to", metavar="TOPIC",
                     help="produce here instead of each letter's worker.source.topic")
    rep.add_argument("--error-class", action="append", default=[], metavar="CLASS",
                     help="only letters of this error class (repeatable): "
                     + ", ".join(ErrorClass))
    rep.add_argument("--processor", action="append", default=[], metavar="NAME",
                     help="only letters of this processor (repeatable)")
    rep.add_argument("--group", metavar="GROUP",
                     help="the replay's consumer group (default: DLQ_TOPIC + '.replay'); it "
                     "moves past every letter it reads, filtered out or not")
    rep.add_argument("--dry-run", action="store_true",
                     help="count what would be replayed; produce and commit nothing")
    add_client_arguments(rep)


def run(args: argparse.Namespace) -> int:
    config = client_config(args.bootstrap_servers, args.kafka_config)
    if args.action == "show":
        return _show(args, config)
    return _replay(args, config)


def _show(args: argparse.Namespace, config: dict[str, str]) -> int:
    from worker.kafka.dead_letter_format import Letter
    from worker.kafka.dead_letter_replay import read_letters

    by_class: Counter[str] = Counter()
    by_processor: Counter[str] = Counter()
    first: list[Letter] = []

    def on_batch(batch: list[Letter]) -> None:
        for letter in batch:
            by_class[letter.error_class] += 1
            by_processor[letter.processor or "-"] += 1
            if len(first) < args.limit:
                first.append(letter)

    total = read_letters(config, args.dlq_topic, on_batch)
    print(f"{args.dlq_topic}: {total} dead letter(s)")
    for title, counts in (("error class", by_class), ("processor", by_processor)):
        if counts:
            print(f"\n{title.upper():24s} LETTERS")
            for name, n in counts.most_common():
                print(f"{name:24s} {n:7d}")
    if first:
        print("\nPARTITION@OFFSET  CLASS  PROCESSOR  SOURCE  REASON")
        for letter in first:
            shrunk = (f"  [shrunk to fit: {len(letter.value or b'')} of {letter.value_bytes} "
                      f"bytes kept; original at {letter.source_topic}[{letter.source_partition}]"
                      f"@{letter.source_offset}]" if letter.truncated else "")
            print(f"{letter.partition}@{letter.offset}  {letter.error_class}  "
                  f"{letter.processor or '-'}  {letter.source_topic or '-'}  {letter.reason}"
                  f"{shrunk}")
    return 0


def _replay(args: argparse.Namespace, config: dict[str, str]) -> int:
    from worker import tracing
    from worker.kafka.dead_letter_replay import replay

    tracing.configure("activity-worker-dlq")  # (OTEL_*: a `replay` span per record)
    try:
        summary = replay(config, args.dlq_topic,
                         group=args.group or f"{args.dlq_topic}.replay", to=args.to,
                         error_classes=args.error_class, processors=args.processor,
                         dry_run=args.dry_run)
    finally:
        tracing.shutdown()
    verb = "would replay" if args.dry_run else "replayed"
    replayed = sum(summary.replayed.values())
    print(f"{args.dlq_topic}: read {summary.read}, {verb} {replayed}, skipped "
          f"{sum(summary.skipped.values())} (filtered out)")
    for name, n in summary.replayed.most_common():
        print(f"  {verb} {n:7d}  {name}")
    for topic, n in summary.to_topics.most_common():
        print(f"  to {topic}: {n}")
    if summary.restored:
        print(f"  {summary.restored} shrunk letter(s) replayed with their original read back "
              "from the source topic")
    if summary.gone:
        print(f"  {summary.gone} shrunk letter(s) NOT replayed: their original is no longer "
              "retained in the source topic (the letter keeps the first bytes of the value "
              "and its SHA-256)")
    return 0
