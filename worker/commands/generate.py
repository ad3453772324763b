"""`activity-worker generate`: realistic events as JSON Lines on stdout, or to a Kafka topic.

A development tool: the generator lives in `devtools/` of a checkout, which the installed
package does not ship."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from worker.errors import ConfigError
from worker.settings import add_client_arguments, client_config

HELP = "Generate realistic CustomerActivity events (all 74 types) to stdout or a Kafka topic."



def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("must be a fraction in [0, 1), e.g. 0.05")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a fraction in [0, 1], e.g. 0.1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--count", "-n", type=int, default=1000, help="events to generate (default 1000)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="R",
        help="events per second; 0 = as fast as possible (default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same events")
    parser.add_argument(
        "--duplicate-share",
        type=_share,
        default=0.0,
        metavar="F",
        help="fraction of redelivered byte-identical duplicates (e.g. 0.05)",
    )
    parser.add_argument(
        "--bad-share",
        type=_share,
        default=0.0,
        metavar="F",
        help="fraction of bad events: invalid UTF-8/JSON, missing fields, ...",
    )
    parser.add_argument(
        "--webhook-share",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="fraction of events (and duplicates) sent as webhook deliveries "
        '(`{"id": "whs_…", "data", "event": {…}}`), e.g. 0.1',
    )
    parser.add_argument("--customers", type=int, default=500, help="size of the customer pool")
    parser.add_argument(
        "--topic", help="produce to this Kafka topic instead of writing stdout (key = customer id)"
    )
    parser.add_argument(
        "--ingress", metavar="URL",
        help="POST each record to the webhook ingress instead (`activity-worker ingress`, e.g. "
        "http://127.0.0.1:9500/webhooks/voucherify), signed with --secret, as Voucherify "
        "delivers webhooks; use with --webhook-share 1")
    parser.add_argument(
        "--secret", default=os.environ.get("WORKER_INGRESS_SECRET", "").split(",")[0] or None,
        help="the webhook secret for --ingress [env WORKER_INGRESS_SECRET]")
    add_client_arguments(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no summary on stderr")


def _paced(records: Iterator[Any], rate: float) -> Iterator[Any]:
    """Hold back records so that no more than `rate` per second go out."""
    start = time.monotonic()
    for i, rec in enumerate(records):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield rec


def run(args: argparse.Namespace) -> int:
    if args.count < 0:
        print("error: --count must be 0 or more", file=sys.stderr)
        return 2
    if args.customers < 1:
        print("error: --customers must be at least 1", file=sys.stderr)
        return 2
    if args.duplicate_share + args.bad_share >= 1.0:
        print("error: --duplicate-share + --bad-share must be below 1", file=sys.stderr)
        return 2
    try:
        from devtools.generate import EventGenerator
    except ImportError:
        raise ConfigError("the event generator is a development tool that is not installed "
                          "with the package: run `activity-worker generate` from a checkout "
                          "of the repository.") from None
    gen = EventGenerator(args.seed, args.duplicate_share, args.bad_share, customers=args.customers,
                         webhook_share=args.webhook_share)
    records = gen.records(args.count)
    if args.rate > 0:
        records = _paced(records, args.rate)
    started = time.monotonic()
    if args.ingress:
        from devtools.deliver import Deliverer

        if not args.secret:
            raise ConfigError("--ingress needs --secret (or WORKER_INGRESS_SECRET): the key the "
                              "ingress checks signatures with")
        try:
            deliverer = Deliverer(args.ingress, args.secret.encode())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        statuses = deliverer.deliver_all(r.value for r in records)
        where = f"the ingress at {args.ingress} ({dict(sorted(statuses.items()))} by status)"
        if set(statuses) - {200}:
            print(f"error: not every delivery was stored: {dict(statuses)}", file=sys.stderr)
            return 1
    elif args.topic:
        from worker.kafka.produce import ProduceError, produce_records

        config = client_config(args.bootstrap_servers, args.kafka_config)
        bootstrap = config.pop("bootstrap.servers")
        try:
            produce_records(((r.key, r.value) for r in records), args.topic, bootstrap,
                            config=config)
        except ProduceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        where = f"topic {args.topic!r} at {bootstrap}"
    else:
        out = sys.stdout.buffer
        chunk: list[bytes] = []
        try:
            for rec in records:
                chunk.append(rec.value)
                if len(chunk) >= 1000 or args.rate > 0:
                    chunk.append(b"")
                    out.write(b"\n".join(chunk))
                    chunk.clear()
                    if args.rate > 0:
                        out.flush()
            if chunk:
                chunk.append(b"")
                out.write(b"\n".join(chunk))
            out.flush()
        except BrokenPipeError:  # e.g. `| head`: the reader is gone, that is fine
            sys.stderr.close()
            return 0
        where = "stdout"
    elapsed = time.monotonic() - started
    c = gen.counts
    if not args.quiet:
        print(
            f"generated {c.total} events to {where} in {elapsed:.2f} s "
            f"({c.total / elapsed if elapsed else 0:,.0f}/s): {c.ok} ok, "
            f"{c.duplicates} duplicates, {c.bad} bad"
            + (f"; {c.webhooks} as webhook deliveries" if c.webhooks else ""),
            file=sys.stderr,
        )
    return 0
