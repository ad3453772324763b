"""The whole path on the real broker: Voucherify-style signed deliveries (10% of them delivered
again, as Voucherify retries) → the ingress → Kafka → the worker → each effect once. And the
endpoint faces the internet: 2,000 connections that sent half a request do not stop /healthz
from answering within a second, nor add threads."""

from __future__ import annotations

import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.ingress.conftest import Client, RunningIngress, delivery, metric
from tests.worker_process import Worker
from worker.ingress.metrics import REQUESTS
from worker.ingress.service import DEFAULT_PATH

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

DELIVERIES = 5000
REPEATED = DELIVERIES // 10


def test_signed_deliveries_with_retries_have_each_effect_once(ingress: RunningIngress,
                                                              tmp_path: Path) -> None:
    bodies = [delivery(n) for n in range(DELIVERIES)]
    rng = random.Random(7)
    sends = bodies + rng.sample(bodies, REPEATED)  # Voucherify's retries: the same bytes again
    rng.shuffle(sends)
    local = threading.local()

    def post(body: bytes) -> int:
        if not hasattr(local, "client"):
            local.client = Client(ingress.port)
        return local.client.post(body)[0]

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, sends))
    took = time.monotonic() - started
    assert statuses.count(200) == len(sends), {s: statuses.count(s) for s in set(statuses)}
    assert metric(ingress.port, REQUESTS + "_total", outcome="stored") == len(sends)
    worker = Worker(ingress.bootstrap, ingress.topic, tmp_path)
    worker.drain()
    seen = worker.effects()
    assert len(seen) == len(set(seen)) == DELIVERIES  # once each, the retries were duplicates
    print(f"{len(sends)} deliveries in {took:.1f}s ({len(sends) / took:.0f}/s, 8 clients)")


HALF_OPEN = 2000
HALF_POST = (b"POST " + DEFAULT_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Length: 100\r\n")  # the head never ends


def test_half_open_connections_do_not_hold_the_ingress(ingress: RunningIngress) -> None:
    threads = threading.active_count()
    socks: list[socket.socket] = []
    try:
        for i in range(HALF_OPEN):
            s = socket.create_connection(("127.0.0.1", ingress.port), timeout=5)
            s.sendall(HALF_POST)
            socks.append(s)
            if (i + 1) % 256 == 0:  # each round accepted before the next (the listen backlog)
                assert Client(ingress.port).post(b"", method="GET", path="/healthz")[0] == 200
        started = time.monotonic()
        status = Client(ingress.port, timeout=5).post(b"", method="GET", path="/healthz")[0]
        answered_in = time.monotonic() - started
        assert status == 200 and answered_in < 1.0, answered_in
        assert Client(ingress.port).post(delivery(1))[0] == 200  # deliveries still get in
        assert threading.active_count() <= threads + 1
    finally:
        for s in socks:
            s.close()
