#!/usr/bin/env python
"""Claims per second per ledger backend, batches of 500, printed side by side.

    python bench/bench_ledger.py [--batches 40] [--batch-size 500] [--backends memory,sqlite,...]
                                 [--prefill 1000000]

Each batch is what the pipeline does: open a session, claim 500 new keys in one call, mark them
all done, commit. A second pass claims the same keys again (all duplicates: DONE). A third adds
the pipeline's savepoint around each processor call (a processor that does not touch the DB).
Redis and PostgreSQL URLs come from ACTIVITY_WORKER_TEST_REDIS_URL and
ACTIVITY_WORKER_TEST_POSTGRES_URL, or the private servers of deploy/local are started (and
stopped again if this script started them).
`--prefill N` first stores N other done marks (batches of 10,000), as a long-running worker's
ledger holds: the SQLite figures depend on it.
Everything it writes goes to a throwaway SQLite file, Redis key prefix or PostgreSQL table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.ledger import ClaimState, open_ledger  # noqa: E402

BACKENDS = ("memory", "sqlite", "redis", "postgres")


def local_server(kind: str) -> tuple[str, bool]:
    """(url, started_here) for a deploy/local server."""
    script = str(REPO / "deploy" / "local" / kind)
    was_running = subprocess.run([script, "status"], capture_output=True).returncode == 0
    up = subprocess.run([script, "up"], capture_output=True, text=True)
    if up.returncode != 0:
        sys.exit(f"bench_ledger: cannot start {kind}: {up.stderr.strip()}")
    return up.stdout.strip().splitlines()[-1], not was_running


def run(url: str, batches: int, size: int, prefill: int = 0) -> tuple[float, float, float]:
    ledger = open_ledger(url)
    ledger.ping()
    tag = uuid.uuid4().hex[:8]
    for start in range(0, prefill, 10_000):
        keys = [f"fill:v-{uuid.uuid4().hex[:16]}:evcus_{uuid.uuid4().hex[:16]}"
                for _ in range(min(10_000, prefill - start))]
        session = ledger.session()
        session.claim(keys)
        session.mark_done(keys)
        session.commit()
    # Real keys are `processor:group_id:event_id` with random ids: random, not sorted, keys.
    all_batches = [[f"bench:v-{uuid.uuid4().hex[:16]}:evcus_{tag}{uuid.uuid4().hex[:12]}"
                    for _ in range(size)] for _ in range(batches)]
    warm = ledger.session()          # connect and create the table outside the timing
    warm.claim([f"bench:warmup:{tag}"])
    warm.rollback()

    start = time.perf_counter()
    for keys in all_batches:
        session = ledger.session()
        states = session.claim(keys)
        session.mark_done(keys)
        session.commit()
    new_s = time.perf_counter() - start
    assert all(s == ClaimState.NEW for s in states)

    start = time.perf_counter()
    for keys in all_batches:
        session = ledger.session()
        states = session.claim(keys)
        session.commit()
    dup_s = time.perf_counter() - start
    assert all(s == ClaimState.DONE for s in states)

    # The pipeline's shape: a savepoint around each processor call (here one that does not
    # touch the database, like an HTTP call).
    start = time.perf_counter()
    for keys in all_batches:
        fresh = [k + ":sp" for k in keys]
        session = ledger.session()
        session.claim(fresh)
        for _ in fresh:
            with session.savepoint():
                pass
        session.mark_done(fresh)
        session.commit()
    sp_s = time.perf_counter() - start
    ledger.close()
    total = batches * size
    return total / new_s, total / dup_s, total / sp_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per backend (40)")
    parser.add_argument("--batch-size", type=int, default=500, help="keys per batch (500)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of " + ",".join(BACKENDS))
    parser.add_argument("--prefill", type=int, default=0,
                        help="done marks stored before the timing (0)")
    args = parser.parse_args()
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(chosen) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")

    tmp = tempfile.mkdtemp(prefix="bench-ledger-")
    tag = uuid.uuid4().hex[:8]
    started: list[str] = []
    cleanup: list[tuple[str, str]] = []
    max_keys = 3 * args.batches * args.batch_size + args.prefill
    urls: dict[str, str] = {"memory": f"memory://?max_keys={max_keys}",
                            "sqlite": f"sqlite:///{tmp}/ledger.db"}
    if "redis" in chosen:
        base = os.environ.get("ACTIVITY_WORKER_TEST_REDIS_URL")
        if not base:
            base, here = local_server("redis")
            if here:
                started.append("redis")
        urls["redis"] = f"{base}{'&' if '?' in base else '?'}prefix=bench-{tag}:"
        cleanup.append(("redis", base))
    if "postgres" in chosen:
        base = os.environ.get("ACTIVITY_WORKER_TEST_POSTGRES_URL")
        if not base:
            base, here = local_server("postgres")
            if here:
                started.append("postgres")
        urls["postgres"] = f"{base}{'&' if '?' in base else '?'}table=bench_{tag}"
        cleanup.append(("postgres", base))

    results: dict[str, tuple[float, float]] = {}
    try:
        for backend in chosen:
            results[backend] = run(urls[backend], args.batches, args.batch_size, args.prefill)
    finally:
        for kind, base in cleanup:
            if kind == "redis":
                import redis

                client = redis.Redis.from_url(base)
                for key in client.scan_iter(match=f"bench-{tag}:*", count=1000):
                    client.delete(key)
                client.close()
            else:
                import psycopg

                with psycopg.connect(base, autocommit=True) as conn:
                    conn.execute(f"DROP TABLE IF EXISTS bench_{tag}")
        for kind in started:
            subprocess.run([str(REPO / "deploy" / "local" / kind), "down"], capture_output=True)

    n = args.batches * args.batch_size
    print(f"ledger claims/s, {args.batches} batches of {args.batch_size} ({n} keys), "
          f"{args.prefill} stored before, {os.cpu_count()} CPUs")
    width = 12
    print(f"{'':<34}" + "".join(f"{b:>{width}}" for b in results))
    print(f"{'new keys (claim+done+commit)':<34}"
          + "".join(f"{r[0]:>{width},.0f}" for r in results.values()))
    print(f"{'duplicates (claim -> DONE)':<34}"
          + "".join(f"{r[1]:>{width},.0f}" for r in results.values()))
    print(f"{'new keys + a savepoint per event':<34}"
          + "".join(f"{r[2]:>{width},.0f}" for r in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
