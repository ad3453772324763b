"""The webhook ingress's speed (not a test; speed goals live here): signed deliveries/s on one
core with acks=all to a local broker, and p50/p99 latency at a steady rate, beside a bare
aiohttp handler that only answers 200 — both measured in the same run by the same client.

Each server runs in its own process pinned to core 0 (`taskset -c 0`); the load generator (an
aiohttp client, its own process) is pinned to core 1. Two loads per server:

  peak    N requests, C at a time over kept-alive connections: requests/s;
  steady  an open loop at R requests/s for S seconds (each request sent at its scheduled time,
          whatever the answers do): p50, p99 and max latency from the scheduled time.

    deploy/local/kafka up
    python bench/bench_ingress.py                    # N=20,000, C=64, R=1,000/s for 10 s
    python bench/bench_ingress.py --requests 5000 --rate 500 --seconds 5

Goals (issue 28): peak >= 0.5x the bare handler's; p99 < 50 ms at 1,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"

BARE = """
import sys
from aiohttp import web

async def ok(request):
    await request.read()
    return web.Response(text="{}", content_type="application/json")

app = web.Application()
app.router.add_post("/webhooks/voucherify", ok)
app.router.add_get("/readyz", lambda r: web.Response(text="ok"))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(n: int) -> bytes:
    return json.dumps({
        "id": f"whs_{n:08d}", "project_id": "proj_1", "type": "customer.loyalty.tier.joined",
        "created_at": "2026-06-01T10:00:00.000Z",
        "data": {"customer": {"id": f"cust_{n % 500}"},
                 "loyalty_tier": {"id": "ltr_1", "points": {"from": 0, "to": 100}}},
        "event": {"id": f"evcus_{n:08d}", "type": "customer.loyalty.tier.joined",
                  "created_at": "2026-06-01T10:00:00Z", "entity_id": f"cust_{n % 500}",
                  "group_id": f"v-{n:08d}"}}).encode()


# -- the load generator (its own process) -------------------------------------------------------
async def _load(port: int, requests: int, concurrency: int, rate: float, seconds: float,
                secret: str) -> dict[str, float]:
    import hashlib
    import hmac

    import aiohttp

    url = f"http://127.0.0.1:{port}/webhooks/voucherify"
    n_bodies = 2000
    bodies = [body(n) for n in range(n_bodies)]
    sigs = [hmac.new(secret.encode(), b, hashlib.sha256).hexdigest() for b in bodies]
    connector = aiohttp.TCPConnector(limit=concurrency)
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=connector) as session:
        async def post(i: int) -> int:
            k = i % n_bodies
            async with session.post(url, data=bodies[k], headers={
                    "x-voucherify-signature": sigs[k],
                    "Content-Type": "application/json"}) as resp:
                await resp.read()
                return resp.status

        for i in range(200):  # warm-up: connections, the producer's first batches
            await post(i)
        queue = iter(range(requests))
        bad = 0

        async def worker() -> None:
            nonlocal bad
            for i in queue:
                if await post(i) != 200:
                    bad += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - started
        out["peak_per_s"] = requests / took
        out["peak_non_200"] = bad

        latencies: list[float] = []
        begin = time.perf_counter() + 0.1
        total = int(rate * seconds)

        async def timed(i: int, at: float) -> None:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await post(i)
            latencies.append(time.perf_counter() - at if status == 200 else float("inf"))

        await asyncio.gather(*(timed(i, begin + i / rate) for i in range(total)))
        latencies.sort()
        out["p50_ms"] = latencies[len(latencies) // 2] * 1000
        out["p99_ms"] = latencies[int(len(latencies) * 0.99)] * 1000
        out["max_ms"] = latencies[-1] * 1000
    return out


def load_main() -> None:
    port, requests, concurrency, rate, seconds = sys.argv[2:7]
    result = asyncio.run(_load(int(port), int(requests), int(concurrency), float(rate),
                               float(seconds), SECRET))
    print(json.dumps(result))


# -- the driver ---------------------------------------------------------------------------------
def _wait_ready(port: int, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server on port {port} did not become ready")


def measure(server: list[str], args: argparse.Namespace, port: int) -> dict[str, float]:
    proc = subprocess.Popen(["taskset", "-c", "0", *server], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=str(ROOT),
                                     WORKER_INGRESS_SECRET=SECRET))
    try:
        _wait_ready(port)
        run = subprocess.run(["taskset", "-c", "1", sys.executable, __file__, "--load",
                              str(port), str(args.requests), str(args.concurrency),
                              str(args.rate), str(args.seconds)],
                             capture_output=True, text=True, timeout=600, check=True)
        result: dict[str, float] = json.loads(run.stdout.strip().splitlines()[-1])
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bootstrap-servers",
                        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    args = parser.parse_args()
    from worker.kafka.admin import ensure_topics

    topic = f"bench-ingress-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": args.bootstrap_servers}, {topic: 4, f"{topic}.dlq": 1})
    bare_port, ingress_port = free_port(), free_port()
    bare = measure([sys.executable, "-c", BARE, str(bare_port)], args, bare_port)
    ingress = measure([sys.executable, "-m", "worker", "ingress", "--listen",
                       f"127.0.0.1:{ingress_port}", "--topic", topic, "--bootstrap-servers",
                       args.bootstrap_servers], args, ingress_port)
    print(f"{'':24}{'peak/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}  (steady "
          f"{args.rate:g}/s for {args.seconds:g} s; peak: {args.requests} at "
          f"{args.concurrency} in flight)")
    for name, r in (("bare aiohttp (200 only)", bare), ("ingress (acks=all)", ingress)):
        print(f"{name:24}{r['peak_per_s']:>10.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
              f"{r['max_ms']:>10.1f}  non-200 at peak: {r['peak_non_200']:.0f}")
    print(f"ratio ingress/bare at peak = {ingress['peak_per_s'] / bare['peak_per_s']:.2f} "
          "(goal >= 0.5); p99 at the steady rate "
          f"{'meets' if ingress['p99_ms'] < 50 else 'misses'} the 50 ms goal")


if __name__ == "__main__":
    main()
