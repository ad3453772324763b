"""The Helm chart on a real single-node Kubernetes (opt-in: K8S_E2E=1; deploy/local/kubernetes
builds the control plane and kubelet once, 11 minutes on 2 shared cores, then starts it on
127.0.0.1), with the image built by deploy/container/build and imported into the node.

Test pods use the node's network (hostNetwork) so that every connection stays on loopback: one
replica per release, since replicas on one node would share the metrics port. Three releases of
the chart join one consumer group on a one-partition topic:
- `a` takes the partition and is Ready; its member id is its pod name (static membership);
- `b` gets no partition and is Ready all the same (its /readyz says 0), so its
  PodDisruptionBudget allows a disruption;
- deleting `a`'s pod (SIGTERM, then the same name again): the partition is back with `a`'s
  instance id, `b` never got it (no rebalance), and the events sent meanwhile are processed;
- `c` on a topic without a dead-letter topic exits 2, and the pod's termination message
  (FallbackToLogsOnError) is the sentence that says what to fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from tests.engine.helpers import committed, create_topic, event_json, produce, wait_for
from tests.http_helpers import get_json
from tests.kafka_helpers import free_port_in, unique_name

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not os.environ.get("K8S_E2E"),
                       reason="opt-in: K8S_E2E=1 runs the chart on a local Kubernetes"),
]

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "deploy" / "local" / "kubernetes"
VALIDATE = REPO / "deploy" / "validate"
CHART = REPO / "deploy" / "helm" / "activity-worker"
IMAGE_REPO, IMAGE_TAG = "localhost/aw-deploy-worker", "k8s"
_FIRST, _LAST = os.environ.get("K8S_E2E_PORTS", "29420-29439").split("-")
PORTS = range(int(_FIRST), int(_LAST) + 1)


def run(*args: str, timeout: float = 600, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                         check=False, env=env)
    assert out.returncode == 0, f"{args}: {out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def kubeconfig() -> Iterator[str]:
    started = time.monotonic()
    out = run(str(CLUSTER), "up", timeout=3000)
    print(f"\ncluster up in {time.monotonic() - started:.0f}s")
    try:
        image = f"{IMAGE_REPO.removeprefix('localhost/')}:{IMAGE_TAG}"
        env = dict(os.environ, IMAGE=image)
        run(str(REPO / "deploy/container/build"), env=env)
        run(str(CLUSTER), "import", image)
        yield out.stdout.strip().splitlines()[-1]
    finally:
        if not os.environ.get("K8S_E2E_KEEP"):
            subprocess.run([str(CLUSTER), "down"], capture_output=True, timeout=300,
                           check=False)


class Kube:
    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace

    def kubectl(self, *args: str) -> str:
        return run("kubectl", "--kubeconfig", self.kubeconfig, "-n", self.namespace,
                   *args).stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def install(self, release: str, *values: str) -> None:
        args = [str(VALIDATE), "helm", "install", release, str(CHART),
                "--kubeconfig", self.kubeconfig, "-n", self.namespace,
                "--set", f"image.repository={IMAGE_REPO}", "--set", f"image.tag={IMAGE_TAG}",
                "--set", "image.pullPolicy=Never", "--set", "hostNetwork=true",
                "--set", "replicaCount=1"]
        for v in values:
            args += ["--set", v]
        run(*args)

    def pod(self, name: str) -> Any:
        out = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, "-n", self.namespace,
                              "get", "pod", name, "-o", "json"], capture_output=True,
                             text=True, check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def ready(self, name: str) -> bool:
        pod = self.pod(name)
        return bool(pod) and any(c["type"] == "Ready" and c["status"] == "True"
                                 for c in pod["status"].get("conditions", []))


def member_instance_ids(bootstrap: str, group: str) -> dict[str, list[int]]:
    """group.instance.id -> partitions, as the group coordinator sees the members."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (desc,) = [f.result(timeout=10) for f in
               admin.describe_consumer_groups([group], request_timeout=10).values()]
    return {m.group_instance_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
            for m in desc.members}


def test_the_chart_on_a_real_kubelet(kubeconfig: str, kafka_bootstrap: str) -> None:
    pg = os.environ.get("ACTIVITY_WORKER_TEST_POSTGRES_URL")
    assert pg, "set ACTIVITY_WORKER_TEST_POSTGRES_URL (deploy/local/postgres up)"
    ns = unique_name("aw")
    kube = Kube(kubeconfig, ns)
    run("kubectl", "--kubeconfig", kubeconfig, "create", "namespace", ns)
    topic, group = unique_name("k8s"), unique_name("k8s")
    create_topic(kafka_bootstrap, topic, 1)
    create_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    produce(kafka_bootstrap, topic, [(0, b"k", event_json(i)) for i in range(20)])
    port_a = free_port_in(PORTS, "for a")
    port_b = free_port_in((p for p in PORTS if p != port_a), "for b")
    common = [f"kafka.bootstrapServers={kafka_bootstrap}", f"kafka.topics={{{topic}}}",
              f"kafka.group={group}", f"ledger.url={pg}", "shutdownTimeout=10"]

    kube.install("a", *common, f"metrics.port={port_a}")
    wait_for(lambda: kube.ready("a-activity-worker-0"), 180, "pod a-0 Ready", interval=1)
    wait_for(lambda: committed(kafka_bootstrap, group, topic, 1) == {0: 20}, 60,
             "a to process and commit the events", interval=0.5)
    assert member_instance_ids(kafka_bootstrap, group) == {"a-activity-worker-0": [0]}
    pod_a = kube.pod("a-activity-worker-0")
    assert pod_a["spec"]["terminationGracePeriodSeconds"] == 25

    kube.install("b", *common, f"metrics.port={port_b}")
    wait_for(lambda: kube.ready("b-activity-worker-0"), 180, "pod b-0 Ready without a partition",
             interval=1)
    assert get_json(f"http://127.0.0.1:{port_b}/readyz") == (
        200, {"status": "ok", "reasons": [], "assigned_partitions": 0})
    wait_for(lambda: kube.get("pdb", "b-activity-worker")["status"].get("disruptionsAllowed")
             == 1, 60, "b's PodDisruptionBudget to allow a disruption", interval=1)
    assert member_instance_ids(kafka_bootstrap, group) == {
        "a-activity-worker-0": [0], "b-activity-worker-0": []}

    # A restart of a static member: SIGTERM, the same pod name again, its partition back.
    uid = pod_a["metadata"]["uid"]
    deleted = time.monotonic()
    kube.kubectl("delete", "pod", "a-activity-worker-0", "--wait=false")
    produce(kafka_bootstrap, topic, [(0, b"k", event_json(i)) for i in range(20, 40)])
    b_partitions: set[object] = set()

    def back() -> bool:
        seen = get_json(f"http://127.0.0.1:{port_b}/readyz")
        if seen:
            b_partitions.add(seen[1]["assigned_partitions"])
        pod = kube.pod("a-activity-worker-0")
        return bool(pod) and pod["metadata"]["uid"] != uid and kube.ready("a-activity-worker-0")

    wait_for(back, 180, "a-0 back under the same name", interval=0.5)
    print(f"\na-0 deleted -> back and Ready in {time.monotonic() - deleted:.1f}s; "
          f"b's partitions meanwhile: {sorted(b_partitions)}")
    wait_for(lambda: committed(kafka_bootstrap, group, topic, 1) == {0: 40}, 60,
             "the events sent during the restart to be processed", interval=0.5)
    assert member_instance_ids(kafka_bootstrap, group) == {
        "a-activity-worker-0": [0], "b-activity-worker-0": []}
    assert b_partitions == {0}, "b was handed the partition: the restart rebalanced the group"

    # Exit 2 under a kubelet: CrashLoopBackOff, and the reason as the termination message.
    bare = unique_name("k8s-nodlq")
    create_topic(kafka_bootstrap, bare, 1)
    kube.install("c", *[v for v in common if not v.startswith("kafka.topics")],
                 f"kafka.topics={{{bare}}}", f"metrics.port={free_port_in(PORTS, 'for c')}")

    def terminated() -> Any:
        pod = kube.pod("c-activity-worker-0")
        statuses = (pod or {}).get("status", {}).get("containerStatuses", [])
        state = statuses[0].get("lastState", {}).get("terminated") if statuses else None
        return state or (statuses[0]["state"].get("terminated") if statuses else None)

    state = wait_for(terminated, 180, "c's worker to exit", interval=1)
    print(f"\nc: exit {state['exitCode']}, termination message: {state.get('message', '')[-300:]}")
    assert state["exitCode"] == 2
    assert f"{bare}.dlq do not exist" in state["message"]
    run("kubectl", "--kubeconfig", kubeconfig, "delete", "namespace", ns, "--wait=false")
