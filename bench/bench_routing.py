"""Routing microbenchmark: cached lookup (ns) and first resolution (µs) per type.

Run from the repo root: `python bench/bench_routing.py`. Uses the built-in processors plus 40
synthetic ones with literal, `*`, `**` and brace patterns, routed over the 74 known types.
Numbers are printed, never asserted (speed goals live here, not in unit tests).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.events import Event
from worker.events.types import KNOWN_TYPES
from worker.processing.routing import Router
from worker.processors.api import Context, Processor
from worker.processors.discovery import load_processors


def _noop(event: Event, ctx: Context) -> None:
    return None


def processors() -> list[Processor]:
    procs = load_processors(entry_points=False)
    shapes = ["customer.{seg}.*", "customer.{seg}.**", "customer.*.{{sent,failed}}",
              "**.{seg}", "customer.{seg}.created"]
    segs = ["loyalty", "order", "redemption", "voucher", "sms", "email", "segment", "holder"]
    for i in range(40):
        pattern = shapes[i % len(shapes)].format(seg=segs[i % len(segs)])
        procs.append(Processor(name=f"synthetic_{i}", patterns=(pattern,), func=_noop))
    return procs


def best_of(rounds: int, fn: object) -> float:
    assert callable(fn)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    procs = processors()
    types = list(KNOWN_TYPES)
    loops = 20_000

    build = best_of(20, lambda: Router(procs, warn_unused=False))
    print(f"router build: {len(procs)} processors, {build * 1e3:.2f} ms")

    def first() -> None:
        router = Router(procs, warn_unused=False)
        for t in types:
            router.resolve(t)

    per_first = (best_of(20, first) - build) / len(types)
    print(f"first resolution: {per_first * 1e6:.1f} µs per type (trie walk, uncached)")

    router = Router(procs, warn_unused=False)
    for t in types:
        router.resolve(t)
    resolve = router.resolve
    work = types * (loops // len(types))

    def cached() -> None:
        for t in work:
            resolve(t)

    cache = router._cache

    def plain_dict() -> None:
        for t in work:
            cache.get(t)

    def empty_loop() -> None:
        for _t in work:
            pass

    base = best_of(7, empty_loop)
    ns_cached = (best_of(7, cached) - base) / len(work) * 1e9
    ns_dict = (best_of(7, plain_dict) - base) / len(work) * 1e9
    print(f"cached resolve: {ns_cached:.0f} ns per event (plain dict.get: {ns_dict:.0f} ns)")
    fan_out = sum(len(router.resolve(t)) for t in types) / len(types)
    print(f"mean fan-out over the known types: {fan_out:.2f} processors")


if __name__ == "__main__":
    main()
