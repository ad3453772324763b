"""The 3-node KRaft cluster the scale-out suite runs on, started by the project's own launcher
(devtools/local_cluster.py, as `deploy/local/kafka up --nodes 3` does) on ports of its own, so it
runs beside the single broker of the other tests and a developer's own cluster."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.local_broker import settings_from
from devtools.local_cluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]
#: Every scenario runs on both consumer group protocols: classic (cooperative-sticky) and
#: KIP-848's consumer protocol (Kafka 4).
PROTOCOLS = ("classic", "consumer")
TEST_CLUSTER_PORT = int(os.environ.get("ACTIVITY_WORKER_TEST_CLUSTER_PORT", "19192"))


def _quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[LocalCluster]:
    first = settings_from(port=TEST_CLUSTER_PORT, data_dir=REPO / ".local" / "kafka-test-cluster",
                          heap="1G", timeout_s=180.0, runtime="jvm", env={})
    cluster = LocalCluster(nodes=3, first=first)
    started = any(cluster.pid(i) is None for i in cluster.node_ids)
    cluster.up(out=_quiet)
    yield cluster
    if started:
        cluster.down(out=_quiet)
        shutil.rmtree(first.data_dir, ignore_errors=True)  # the suite's topics, ~100 MB


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    """The group protocol of the scenario's workers (`--group-protocol`)."""
    return str(request.param)


@pytest.fixture
def cluster(kafka_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The cluster with all three nodes up, before and after the test (a test that kills or
    freezes a node leaves it to this fixture to bring back)."""
    kafka_cluster.up(out=_quiet)
    yield kafka_cluster
    for i in kafka_cluster.node_ids:
        pid = kafka_cluster.pid(i)
        if pid is not None:
            kafka_cluster.thaw_node(i)
    kafka_cluster.up(out=_quiet)
