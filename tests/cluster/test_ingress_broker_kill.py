"""The webhook ingress on the 3-node cluster (RF 3, min.insync.replicas 2): the broker that
leads most of the topic's partitions is killed with -9 under a steady load of signed deliveries
and started again. Asserted: every delivery answered 2xx is in the topic (acks=all: a record is
acknowledged only once two replicas have it), the ingress keeps answering (503s at most while
leaders move), and it stores deliveries again by itself."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from devtools.local_cluster import LocalCluster
from tests.cluster.scenario import create_topics, leaders, unique
from tests.engine.helpers import wait_for
from tests.ingress.conftest import Client, delivery, start_ingress, webhook_ids_in

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

PARTITIONS = 6


def test_a_broker_kill_under_load_loses_no_2xx_delivery(cluster: LocalCluster) -> None:
    bootstrap = cluster.bootstrap
    topic = unique("ingress")
    create_topics(bootstrap, topic, PARTITIONS)
    running = start_ingress(bootstrap, topic, f"{topic}.dlq")
    answered: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        client = Client(running.port, timeout=20)
        n = worker * 1_000_000
        while not stop.is_set():
            n += 1
            status = client.post(delivery(n))[0]
            with lock:
                answered[f"whs_{n:08d}"] = status
            if status != 200:
                time.sleep(0.05)

    def stored() -> int:
        with lock:
            return sum(s == 200 for s in answered.values())

    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(load, w) for w in range(1, 5)]
            wait_for(lambda: stored() > 300, 60, "deliveries stored")
            victim = leaders(bootstrap, topic).most_common(1)[0][0]
            cluster.kill_node(victim)
            before = stored()
            wait_for(lambda: stored() > before + 300, 120, "deliveries stored without it")
            cluster.start_node(victim, timeout_s=180)
            after = stored()
            wait_for(lambda: stored() > after + 300, 120, "deliveries stored after its return")
            stop.set()
            for f in futures:
                f.result(60)
    finally:
        stop.set()
        running.ingress.close()
    ok = {k for k, s in answered.items() if s == 200}
    in_kafka = set(webhook_ids_in(bootstrap, topic, PARTITIONS, timeout=60))
    assert ok <= in_kafka, f"{len(ok - in_kafka)} deliveries answered 200 are not in Kafka"
    statuses = {s for s in answered.values()}
    assert statuses <= {200, 503}, statuses
    print(f"answered: {len(ok)} x 200, {sum(s == 503 for s in answered.values())} x 503")
