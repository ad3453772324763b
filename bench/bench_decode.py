"""Decode speed of the event model vs orjson.loads and json.loads on the same realistic events.

    python bench/bench_decode.py [--events 20000] [--repeat 7]

Measures, per event (best of --repeat runs over the same list of generated events):
- json.loads / orjson.loads of the whole event (what a dict-based consumer pays);
- decode_event: the envelope only, `data` kept raw (what routing pays);
- decode_event + event.data: envelope plus the typed data struct (what a processor pays).
Goals (issue #3): envelope >= 3x faster than orjson.loads; envelope + typed data >= 1.3x.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
import orjson

from devtools.generate import EventGenerator
from worker.events import decode_event, family_of


def _envelope(values: list[bytes]) -> None:
    for v in values:
        decode_event(v)


def _envelope_and_data(values: list[bytes]) -> None:
    for v in values:
        decode_event(v).data  # noqa: B018


def _one_pass_decoders() -> dict[str, msgspec.json.Decoder[Any]]:
    """For comparison only: one decoder per type whose `data` field is that type's typed
    struct, so the whole event is read in one pass. The worker cannot route this way (the type
    must be read before the decoder is chosen, and the envelope must not pay for `data`), so
    this is the ceiling a two-pass lazy decode is measured against."""
    from datetime import datetime
    from typing import Annotated

    from worker.events.registry import DATA_TYPES

    aware = Annotated[datetime, msgspec.Meta(tz=True)]
    out: dict[str, msgspec.json.Decoder[Any]] = {}
    for etype, cls in DATA_TYPES.items():
        struct = msgspec.defstruct("OnePass", [("id", str), ("type", str), ("group_id", str),
                                               ("created_at", aware), ("data", cls)])
        out[etype] = msgspec.json.Decoder(struct)
    return out


def _orjson(values: list[bytes]) -> None:
    loads = orjson.loads
    for v in values:
        loads(v)


def _json(values: list[bytes]) -> None:
    loads = json.loads
    for v in values:
        loads(v)


def _msgspec_any(values: list[bytes]) -> None:
    decode = msgspec.json.Decoder().decode
    for v in values:
        decode(v)


def _empty(values: list[bytes]) -> None:
    for _v in values:
        pass


def best_us(fn: Callable[[list[bytes]], None], values: list[bytes], repeat: int) -> float:
    """Best per-event time in µs, with the bare loop's cost subtracted."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn(values)
        times.append(time.perf_counter() - t0)
    return min(times) / len(values) * 1e6


def _by_family(values: list[bytes], repeat: int) -> None:
    """Ratios per family: larger, more nested data favours the typed decode."""
    groups: dict[str, list[bytes]] = {}
    for v in values:
        groups.setdefault(family_of(decode_event(v).type) or "?", []).append(v)
    print("\n| family | mean B | orjson µs | envelope | envelope + typed data |")
    print("|---|---:|---:|---:|---:|")
    for family, vals in sorted(groups.items()):
        loop = best_us(_empty, vals, repeat)
        base = best_us(_orjson, vals, repeat) - loop
        env = best_us(_envelope, vals, repeat) - loop
        typed = best_us(_envelope_and_data, vals, repeat) - loop
        size = statistics.mean(len(v) for v in vals)
        print(f"| {family} | {size:.0f} | {base:.2f} | {base / env:.2f}x | {base / typed:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--by-family", action="store_true", help="also one row per family (ratios vs orjson)"
    )
    args = parser.parse_args()

    values = [r.value for r in EventGenerator(args.seed).records(args.events)]
    sizes = [len(v) for v in values]
    print(
        f"{len(values)} realistic events (all 74 types), {statistics.mean(sizes):.0f} B mean, "
        f"{statistics.median(sizes):.0f} B median; python {platform.python_version()}, "
        f"msgspec {msgspec.__version__}, orjson {orjson.__version__}"
    )
    loop = best_us(_empty, values, args.repeat)
    decoders = _one_pass_decoders()
    by_type = [(decoders[decode_event(v).type], v) for v in values
               if decode_event(v).type in decoders]

    def _one_pass(_: list[bytes]) -> None:
        for decoder, v in by_type:
            decoder.decode(v)

    rows = {
        "json.loads (whole event)": best_us(_json, values, args.repeat),
        "orjson.loads (whole event)": best_us(_orjson, values, args.repeat),
        "msgspec.json.decode, untyped (whole event)": best_us(_msgspec_any, values, args.repeat),
        "decode_event (envelope, data raw)": best_us(_envelope, values, args.repeat),
        "decode_event + event.data (typed)": best_us(_envelope_and_data, values, args.repeat),
    }
    # (over the events of types with a typed shape only; scaled to the same event count)
    one_pass = best_us(_one_pass, values, args.repeat) * len(values) / max(1, len(by_type))
    rows["comparison: one-pass typed decode, type known up front"] = one_pass
    rows = {k: v - loop for k, v in rows.items()}
    base = rows["orjson.loads (whole event)"]
    print("\n| decoder | µs/event | vs orjson.loads |\n|---|---:|---:|")
    for name, us in rows.items():
        print(f"| {name} | {us:.2f} | {base / us:.2f}x |")
    env = base / rows["decode_event (envelope, data raw)"]
    typed = base / rows["decode_event + event.data (typed)"]
    if args.by_family:
        _by_family(values, args.repeat)
    env_goal = "met" if env >= 3 else "NOT met"
    typed_goal = "met" if typed >= 1.3 else "NOT met"
    print(
        f"\nenvelope: {env:.2f}x orjson (goal >= 3x: {env_goal}); "
        f"envelope + typed data: {typed:.2f}x (goal >= 1.3x: {typed_goal})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
