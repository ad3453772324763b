"""`activity-worker topics create` on the real broker: the broker's default replication unless
asked, topic configs, and a warning (not silence) when an existing topic differs."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.kafka_helpers import KafkaHelper, unique_name
from worker.cli import main
from worker.errors import WorkerError
from worker.kafka.admin import wait_until_known

pytestmark = pytest.mark.kafka


def _describe(bootstrap: str, topic: str) -> tuple[int, set[int], dict[str, str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic=topic, timeout=10).topics[topic]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    return (len(md.partitions), {len(p.replicas) for p in md.partitions.values()},
            {k: v.value for k, v in configs.items()})


def test_create_with_partitions_configs_and_broker_default_replication(
        kafka_helper: KafkaHelper, capsys: pytest.CaptureFixture[str]) -> None:
    name = unique_name("topics")
    kafka_helper.created += [name, f"{name}.dlq"]
    code = main(["topics", "create", name, "--with-dlq", "--partitions", "3",
                 "--config", "retention.ms=86400000", "--config", "min.insync.replicas=1",
                 "--bootstrap-servers", kafka_helper.bootstrap])
    assert code == 0
    for topic in (name, f"{name}.dlq"):
        partitions, replicas, configs = _describe(kafka_helper.bootstrap, topic)
        assert (partitions, replicas) == (3, {1})  # the single broker's default: 1
        assert configs["retention.ms"] == "86400000"
        assert configs["min.insync.replicas"] == "1"
    capsys.readouterr()

    # Again, asking for something else: kept as it is, and said so.
    code = main(["topics", "create", name, "--partitions", "5", "--replication-factor", "1",
                 "--bootstrap-servers", kafka_helper.bootstrap])
    err = capsys.readouterr().err
    assert code == 0
    assert f"warning: topic '{name}' exists with 3 partitions, not 5: kept as it is" in err
    assert "replication factor" not in err  # 1 was asked and 1 it has
    assert _describe(kafka_helper.bootstrap, name)[0] == 3


def test_an_impossible_replication_factor_is_a_sentence(
        kafka_helper: KafkaHelper, capsys: pytest.CaptureFixture[str]) -> None:
    name = unique_name("topics-rf")
    code = main(["topics", "create", name, "--replication-factor", "3",
                 "--bootstrap-servers", kafka_helper.bootstrap])
    err = capsys.readouterr().err
    assert code != 0
    assert "could not create topic" in err and "replication" in err.lower()
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["--config", "novalue"], ["--partitions", "0"],
                                  ["--replication-factor", "0"]])
def test_bad_arguments_are_a_sentence_and_exit_2(
        args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["topics", "create", unique_name("never"), *args,
                 "--bootstrap-servers", "127.0.0.1:1"])
    assert code == 2
    assert capsys.readouterr().err.startswith("activity-worker topics: --")


def test_a_topic_a_broker_never_learns_is_waited_for_with_progress_then_a_sentence(
        kafka_helper: KafkaHelper) -> None:
    said: list[str] = []
    name = unique_name("never-created")
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as caught:
        wait_until_known({"bootstrap.servers": kafka_helper.bootstrap}, [name], timeout=3,
                         progress=said.append)
    assert 3 <= time.monotonic() - t0 < 10
    assert len(said) == 1 and "waiting for broker(s) 1 to know" in said[0]
    text = str(caught.value)
    assert f"broker 1 (127.0.0.1:{kafka_helper.bootstrap.rsplit(':', 1)[1]}) does not know " \
           f"{name}" in text
    assert "UNKNOWN_TOPIC_OR_PART" in text and "run the command again" in text
