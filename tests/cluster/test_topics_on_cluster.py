"""`activity-worker topics create` on the 3-node cluster, many times in a row: the controller
accepts a topic before every broker has it in its metadata, and reading the topic's config back
(`--with-dlq` sizes the dead-letter topic from it) used to fail now and then with
UNKNOWN_TOPIC_OR_PART when a lagging broker answered (measured: 4 of 12 creations). The command
now returns only once every broker knows its topics."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from devtools.local_cluster import LocalCluster
from tests.cluster.scenario import unique
from worker.cli import main

pytestmark = pytest.mark.kafka

CREATIONS = 15


def known_by_each_broker(bootstrap: str, topic: str) -> dict[int, bool]:
    """Per broker, whether it knows `topic` (a DescribeConfigs naming a broker goes to it)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    out: dict[int, bool] = {}
    for broker in admin.list_topics(timeout=10).brokers:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        futures = admin.describe_configs(
            [ConfigResource(ConfigResource.Type.BROKER, str(broker)), resource])
        try:
            futures[resource].result(10)
            out[broker] = True
        except Exception:
            out[broker] = False
    return out


def test_topics_create_with_dlq_succeeds_every_time_and_every_broker_knows_the_topics(
        cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    failures = []
    for i in range(CREATIONS):
        name = unique(f"create{i}")
        code = main(["topics", "create", name, "--with-dlq", "--partitions", "12",
                     "--bootstrap-servers", cluster.bootstrap])
        captured = capsys.readouterr()
        if code != 0:
            failures.append(captured.err.strip())
            continue
        assert f"topics ready on {cluster.bootstrap}: {name}, {name}.dlq" in captured.out
        for topic in (name, f"{name}.dlq"):
            assert known_by_each_broker(cluster.bootstrap, topic) == {1: True, 2: True, 3: True}
    assert not failures, f"{len(failures)} of {CREATIONS} creations failed: {failures}"
