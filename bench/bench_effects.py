"""The async path's own cost per event without Kafka: CPU instructions of the real pipeline
(decode, route, memory ledger) with one async processor that awaits `asyncio.sleep(0)`, handed
batches of in-memory records keyed over K ordering keys, counted by callgrind on N and 3N events
(the records' values made by the parent, so not counted); the `sync` mode is the same with a
plain `def` processor, for scale.

bench/bench_io.py measures the rate against a real broker and real waits, which is what the
goals are about; but at 10 ms effects the rate is bounded by this per-event cost (at ~45 µs a
core runs ~22,000/s), and on a busy 2-core machine the rate moves by tens of percent while
instruction counts do not.

    python bench/bench_effects.py [--events 5000] [--keys 1000] [--modes sync,async]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODES = "sync,async"


def child(mode: str, n: int, batch: int, keys: int, path: str) -> None:
    from worker.ledger import open_ledger
    from worker.processing.pipeline import Pipeline
    from worker.processors.api import Processor
    from worker.types import LocalMessage

    values = Path(path).read_bytes().split(b"\n")[:n]  # (made by the parent: not counted)
    messages = [LocalMessage(v, "bench", i % 6, i // 6, f"cust_{i % keys}".encode())
                for i, v in enumerate(values)]
    effects = [0]
    if mode == "async":
        async def func(event: Any, ctx: Any) -> None:
            await asyncio.sleep(0)
            effects[0] += 1
    else:
        def func(event: Any, ctx: Any) -> None:  # type: ignore[misc]
            effects[0] += 1
    pipeline = Pipeline([Processor(name="bench", patterns=("customer.**",), func=func)],
                        open_ledger("memory://?max_keys=1000000"), max_in_flight=1000)
    t0 = time.process_time()
    try:
        for start in range(0, n, batch):
            assert pipeline.handle(messages[start:start + batch], lambda: False).completed
    finally:
        cpu = time.process_time() - t0
        pipeline.close()
    assert effects[0] == n, effects
    print(f"RESULT ok cpu={cpu}")


def instructions(mode: str, n: int, batch: int, keys: int, path: str) -> int:
    from bench_instructions import callgrind

    return callgrind([__file__, "--child", mode, "--events", str(n), "--batch-size", str(batch),
                      "--keys", str(keys), "--values", path], mode,
                     dict(os.environ, PYTHONHASHSEED="0"))  # (the same dict layouts each run)


def cpu_seconds(mode: str, n: int, batch: int, keys: int, path: str) -> float:
    """The CPU time (every thread) of handling the batches, natively."""
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--events", str(n),
                          "--batch-size", str(batch), "--keys", str(keys), "--values", path],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"RESULT ok cpu=([0-9.e-]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=5000, help="N: runs of N and 3N events")
    p.add_argument("--keys", type=int, default=1000, help="distinct ordering keys")
    p.add_argument("--modes", default=MODES, help="comma-separated: sync, async")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--cpu", type=int, default=0, metavar="R",
                   help="measure CPU time natively instead (R pairs of runs, the median)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--values", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.events, args.batch_size, args.keys, args.values)
        return
    import tempfile

    import bench_engine

    small, large = args.events, 3 * args.events
    values = Path(tempfile.mkdtemp(prefix="bench-effects-")) / "events"
    values.write_bytes(b"\n".join(bench_engine._fallback_events(large)))
    for mode in args.modes.split(","):
        if args.cpu:
            runs = sorted((cpu_seconds(mode, large, args.batch_size, args.keys, str(values))
                           - cpu_seconds(mode, small, args.batch_size, args.keys, str(values)))
                          / (large - small) * 1e6 for _ in range(args.cpu))
            print(f"{mode:8s} {runs[len(runs) // 2]:>7.1f} µs of CPU/event (median of "
                  f"{args.cpu}: {', '.join(f'{r:.1f}' for r in runs)})", flush=True)
            continue
        a = instructions(mode, small, args.batch_size, args.keys, str(values))
        b = instructions(mode, large, args.batch_size, args.keys, str(values))
        print(f"{mode:8s} {(b - a) / (large - small):>9,.0f} instructions/event", flush=True)


if __name__ == "__main__":
    main()
