"""CPU instructions per event of each engine benchmark mode, counted by valgrind (callgrind).

Events/s on this 2-core machine move by 10-30% with whatever else runs; instruction counts do
not. Each mode of bench/bench_engine.py runs under `valgrind --tool=callgrind` twice, on a topic
of N events and one of 3N, and the difference divided by 2N is the cost of one more event, with
startup, group join and shutdown cancelled out. It counts every thread of the process
(librdkafka's too), not the broker.

    deploy/local/kafka up
    python bench/bench_instructions.py [--events 5000] [--modes plain,engine,pipeline]

Caveat: under valgrind the process runs ~50x slower, so whatever the engine does per unit of
wall time is over-counted; batches default to 200 events so that one stays under the engine's
`pause_after` (0.5 s) even under valgrind, else the consumer-serving loop that runs while a
slow batch is in flight would be counted too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def callgrind(args: list[str], what: str, env: dict[str, str] | None = None) -> int:
    """The instructions of `python ARGS` (which prints a `RESULT ` line when it went well)."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None or "RESULT " not in proc.stdout:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-800:]}{proc.stdout[-400:]}")
    return int(found.group(1))


def instructions(mode: str, topic: str, events: int, bootstrap: str, batch: int) -> int:
    return callgrind([str(ROOT / "bench" / "bench_engine.py"), "--child", mode, "--topic", topic,
                      "--events", str(events), "--batch-size", str(batch), "--bootstrap",
                      bootstrap], f"{mode} on {topic}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=5000, help="N: topics of N and 3N events")
    p.add_argument("--modes", default="plain,engine,pipeline",
                   help="comma-separated modes of bench/bench_engine.py")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS",
                                                         "127.0.0.1:9092"))
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    import bench_engine  # (bench/ is on sys.path)

    small, large = args.events, 3 * args.events
    topics = {}
    for n in (small, large):
        topics[n] = f"bench-instr-{uuid.uuid4().hex[:8]}"
        bench_engine.produce(args.bootstrap, topics[n], n, 6)
    print(f"produced {small} and {large} events; counting instructions (takes a minute a mode)")
    per_event: dict[str, float] = {}
    for mode in args.modes.split(","):
        a = instructions(mode, topics[small], small, args.bootstrap, args.batch_size)
        b = instructions(mode, topics[large], large, args.bootstrap, args.batch_size)
        per_event[mode] = (b - a) / (large - small)
        print(f"{mode:20s} {per_event[mode]:>9,.0f} instructions/event", flush=True)
    plain = per_event.get("plain")
    if plain:
        for mode, n in per_event.items():
            if mode != "plain":
                print(f"ratio plain/{mode} (the throughput ratio if both ran at the same "
                      f"instructions per second) = {plain / n:.2f}")


if __name__ == "__main__":
    main()
