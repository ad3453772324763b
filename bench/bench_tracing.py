"""Tracing's cost per event without Kafka: the `pipeline` mode's pipeline (real pipeline, memory
ledger, two processors; bench/bench_engine.py; no engine, so no metrics observer) handed
batches of 200 in-memory records directly, with tracing off or on at P% (bench/traced.py: each
span encoded as the worker's exporter encodes it, not sent), counted by callgrind on N and 3N
events (the records' values made by the parent, so not counted).

bench/bench_instructions.py counts the same modes through the engine and a real broker, which
is the worker's whole cost per event; but there the librdkafka threads and the engine's timers
count too, and they grow with wall time, so on a busy machine two runs of one mode differ by
several percent — as much as the tracing goals. Here nothing runs but the pipeline (and the
idle batch span processor's thread), so the difference between modes is tracing's own.

    python bench/bench_tracing.py [--events 5000] [--modes pipeline,pipeline-traced-1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODES = "pipeline,pipeline-traced-0,pipeline-traced-0.1,pipeline-traced-1,pipeline-traced-100"


def child(mode: str, n: int, batch: int, path: str) -> None:
    import bench_engine  # (bench/ is on sys.path)
    import traced

    from worker.types import LocalMessage

    values = Path(path).read_bytes().split(b"\n")[:n]  # (made by the parent: not counted)
    messages = [LocalMessage(v, "bench", i % 6, i // 6, str(i).encode())
                for i, v in enumerate(values)]
    pipeline, _ = bench_engine._pipeline(mode)
    for start in range(0, n, batch):
        assert pipeline.handle(messages[start:start + batch], lambda: False).completed
    if traced.ratio(mode) is not None:
        traced.flush()
    print("RESULT ok")


def instructions(mode: str, n: int, batch: int, path: str) -> int:
    from bench_instructions import callgrind

    return callgrind([__file__, "--child", mode, "--events", str(n), "--batch-size", str(batch),
                      "--values", path], mode,
                     dict(os.environ, PYTHONHASHSEED="0"))  # (the same dict layouts each run)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=5000, help="N: runs of N and 3N events")
    p.add_argument("--modes", default=MODES, help="comma-separated modes of bench_engine.py")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--values", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.events, args.batch_size, args.values)
        return
    import tempfile

    import bench_engine

    small, large = args.events, 3 * args.events
    values = Path(tempfile.mkdtemp(prefix="bench-tracing-")) / "events"
    values.write_bytes(b"\n".join(bench_engine._fallback_events(large)))
    base = None
    for mode in args.modes.split(","):
        a = instructions(mode, small, args.batch_size, str(values))
        b = instructions(mode, large, args.batch_size, str(values))
        per_event = (b - a) / (large - small)
        base = per_event if base is None else base
        print(f"{mode:20s} {per_event:>9,.0f} instructions/event  "
              f"{per_event - base:>+9,.0f} vs {args.modes.split(',')[0]}", flush=True)


if __name__ == "__main__":
    main()
