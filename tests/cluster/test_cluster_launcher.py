"""`deploy/local/kafka ... --nodes 3`: what `up` does for one node holds for three (idempotent,
a node killed with -9 is started again, `status` says which node is not there), the node
helpers act on one node by id, and `down` stops all nodes together and frees their ports."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devtools.local_broker import port_free, server_properties, settings_from
from devtools.local_cluster import LocalCluster, out_of_sync

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "deploy" / "local" / "kafka"


def launcher(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return subprocess.run([str(LAUNCHER), *args, "--nodes", "3", "--port",
                           str(cluster.first.port), "--data-dir", str(cluster.first.data_dir)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)


def test_each_node_is_a_voter_with_replication_3_and_min_isr_2(tmp_path: Path) -> None:
    cluster = LocalCluster(3, settings_from(port=29192, data_dir=tmp_path, env={}))
    props = dict(line.split("=", 1) for line in server_properties(cluster.node(2)).splitlines()
                 if "=" in line and not line.startswith("#"))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:29193,2@127.0.0.1:29195,3@127.0.0.1:29197")
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29194,CONTROLLER://127.0.0.1:29195"
    assert props["log.dirs"] == str(tmp_path / "node-2" / "kraft")
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr",
                "share.coordinator.state.topic.min.isr"):
        assert props[key] == "2", key
    # KIP-848 groups keep Kafka's default session (45 s); a test may ask its group for less
    assert "group.consumer.session.timeout.ms" not in props
    assert int(props["group.consumer.min.session.timeout.ms"]) <= 4000


def test_up_is_idempotent_restarts_a_killed_node_and_status_names_it(
        cluster: LocalCluster) -> None:
    pids = [cluster.pid(i) for i in cluster.node_ids]
    again = launcher(cluster, "up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert [cluster.pid(i) for i in cluster.node_ids] == pids  # nothing restarted

    killed = launcher(cluster, "node", "kill", "2")
    assert killed.returncode == 0, killed.stderr
    assert cluster.pid(2) is None
    status = launcher(cluster, "status")
    assert status.returncode == 3
    assert "node 2: not running" in status.stdout and "degraded" in status.stdout

    up = launcher(cluster, "up")
    assert up.returncode == 0, up.stderr
    assert "node 2 on" in up.stdout and "ready: 3 nodes" in up.stdout
    assert cluster.pid(2) is not None and cluster.pid(1) == pids[0]
    status = launcher(cluster, "status")
    assert status.returncode == 0 and "running: all 3 nodes are ready" in status.stdout


def test_freeze_thaw_stop_and_start_one_node(cluster: LocalCluster) -> None:
    assert launcher(cluster, "node", "freeze", "3").returncode == 0
    assert "node 3: frozen (SIGSTOP)" in launcher(cluster, "status").stdout
    assert launcher(cluster, "node", "thaw", "3").returncode == 0
    assert launcher(cluster, "node", "stop", "1").returncode == 0
    assert cluster.pid(1) is None
    start = launcher(cluster, "node", "start", "1")
    assert start.returncode == 0, start.stderr
    assert "back in the cluster, all replicas in sync" in start.stdout
    assert out_of_sync(cluster.bootstrap, 3) == []


def test_a_node_id_outside_the_cluster_is_refused_with_what_to_do(cluster: LocalCluster) -> None:
    bad = launcher(cluster, "node", "kill", "4")
    assert bad.returncode == 1
    assert "There is no node 4: this cluster has nodes 1 to 3" in bad.stderr


def test_down_stops_all_nodes_together_and_frees_their_ports(cluster: LocalCluster) -> None:
    pids = [cluster.pid(i) for i in cluster.node_ids]
    down = launcher(cluster, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped: 3 nodes (SIGTERM)" in down.stdout
    assert all(pid is not None for pid in pids)
    assert [cluster.pid(i) for i in cluster.node_ids] == [None, None, None]
    ports = [p for i in cluster.node_ids for p in cluster.node(i).ports]
    assert all(port_free(p) for p in ports)
    # (the fixture brings the cluster back up for the next test)
