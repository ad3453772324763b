"""The chart on a real single-node Kubernetes, scenario by scenario (opt-in: run by
deploy/k8s/e2e, which starts the cluster, a broker and PostgreSQL, and passes them in through
K8S_E2E_KUBECONFIG, KAFKA_BOOTSTRAP_SERVERS and K8S_E2E_POSTGRES_URL).

One release (`aw`, a StatefulSet of 3 on a 6-partition topic, static membership, the PostgreSQL
ledger) takes a live stream through each scenario in turn; its pods share the node's network,
pod N serving on 127.0.0.1:(base + N) (metrics.portPerPod). A processor module mounted from a
ConfigMap writes one row per event into an effects table inside the ledger's transaction (the
table has no unique key: a repeated effect would be a second row), with the pod name, a token
of the process (a restarted pod is a new one), the partition and the offset. After each
scenario: lag 0 on every partition, one effect per distinct event (lost = 0, duplicates = 0),
and committed offsets never went backwards.

Two small releases apart: `idle` (2 replicas on 1 partition: the one without a partition is
Ready and its eviction is allowed) and `bad` (a topic without a dead-letter topic: exit 2, the
sentence as the termination message).

K8S_E2E_GROUP_PROTOCOL (classic, or consumer: KIP-848) is the chart's kafka.groupProtocol for
every release. The 15 s session timeout is the worker's KAFKA_SESSION_TIMEOUT_MS under classic;
under KIP-848 the worker refuses it, and it is the group's consumer.session.timeout.ms, set on
the broker before the release is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from devtools.generate import EventGenerator
from tests.cluster.scenario import (
    KIP848_HEARTBEAT_MS,
    OffsetWatch,
    Stream,
    create_topics,
    lag,
    set_group_session,
    unique,
)
from tests.engine.helpers import committed, create_topic, wait_for
from worker.events.envelope import decode_event

KUBECONFIG = os.environ.get("K8S_E2E_KUBECONFIG", "")
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.postgres,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(not KUBECONFIG, reason="opt-in: deploy/k8s/e2e runs these on a local "
                                              "Kubernetes it starts (K8S_E2E_KUBECONFIG)"),
]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "activity-worker"
HELM = [str(REPO / "deploy" / "validate"), "helm"]
IMAGE = os.environ.get("K8S_E2E_IMAGE", "localhost/aw-deploy-worker:k8s-e2e")
PORT_BASE = int(os.environ.get("K8S_E2E_PORT_BASE", "49400"))  # pod N of a release: base + N
POD_LOGS = Path(os.environ.get("K8S_E2E_POD_LOGS", "/var/log/pods"))
KEDA = os.environ.get("K8S_E2E_KEDA", "0") == "1"  # deploy/k8s/e2e started KEDA
SUMMARY = Path(os.environ.get("K8S_E2E_SUMMARY", REPO / ".local" / "k8s-e2e-summary.txt"))
PARTITIONS = 6
SESSION_TIMEOUT_MS = 15000  # a deleted pod is back well within it (static membership)
PROTOCOL = os.environ.get("K8S_E2E_GROUP_PROTOCOL", "classic")  # the chart's kafka.groupProtocol
assert PROTOCOL in ("classic", "consumer"), f"K8S_E2E_GROUP_PROTOCOL={PROTOCOL}: classic|consumer"
KIP848 = PROTOCOL == "consumer"
SHUTDOWN_TIMEOUT, GRACE_MARGIN = 10, 5  # terminationGracePeriodSeconds = 15
RATE = 150.0  # events per second while a scenario breaks things

EFFECTS_MODULE = '''
import os, time, uuid
from worker.processors import processor

# The pod name and a token of this process: a pod deleted and made again is a new process.
WORKER = os.environ["POD_NAME"] + "/" + uuid.uuid4().hex[:6]
INSERT = ("INSERT INTO " + os.environ["E2E_EFFECTS_TABLE"]
          + " (event_id, worker, part, off) VALUES (%s, %s, %s, %s)")
DELAY = float(os.environ.get("E2E_EFFECT_DELAY", "0"))  # a slow processor, to build up lag


@processor("**", name="e2e_effects", requires_transaction=True)
def effects(event, ctx):
    time.sleep(DELAY)
    ctx.transaction.execute(INSERT, (event.id, WORKER, ctx.partition, ctx.offset))
'''

_summary: list[str] = [
    f"group protocol: {PROTOCOL} (kafka.groupProtocol); session timeout "
    f"{SESSION_TIMEOUT_MS // 1000}s as "
    + (f"the group's consumer.session.timeout.ms on the broker (heartbeat "
       f"{KIP848_HEARTBEAT_MS} ms)" if KIP848 else "the worker's KAFKA_SESSION_TIMEOUT_MS")]


def note(line: str) -> None:
    print(f"\n  {line}")
    _summary.append(line)


@pytest.fixture(scope="module", autouse=True)
def summary_file() -> Iterator[None]:
    yield
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text("".join(f"{line}\n" for line in _summary))


def run(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                         check=False)
    if check:
        assert out.returncode == 0, f"{' '.join(args)}: {out.stderr[-3000:]}"
    return out


@dataclass
class Kube:
    namespace: str

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("kubectl", "--kubeconfig", KUBECONFIG, "-n", self.namespace, *args,
                   check=check)

    def get(self, *args: str) -> Any:
        out = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def ready(self, pod: str) -> bool:
        p = self.get("pod", pod)
        return bool(p) and p["metadata"].get("deletionTimestamp") is None and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", []))

    def uid(self, pod: str) -> str | None:
        p = self.get("pod", pod)
        return p["metadata"]["uid"] if p else None

    def evict(self, pod: str) -> subprocess.CompletedProcess[str]:
        """POST an Eviction (what a drain does): 201, or 429 when the PDB refuses it."""
        body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                           "metadata": {"name": pod, "namespace": self.namespace}})
        return subprocess.run(
            ["kubectl", "--kubeconfig", KUBECONFIG, "create", "--raw",
             f"/api/v1/namespaces/{self.namespace}/pods/{pod}/eviction", "-f", "-"],
            input=body, capture_output=True, text=True, timeout=60, check=False)

    def pod_log(self, pod: str, uid: str) -> str:
        """The worker container's log as the kubelet wrote it (`kubectl logs` needs a node
        name that resolves; this node's does not)."""
        text = ""
        for path in sorted((POD_LOGS / f"{self.namespace}_{pod}_{uid}" / "worker").glob("*.log")):
            with contextlib.suppress(FileNotFoundError):  # the kubelet cleans up
                text += path.read_text(errors="replace")
        return text


def json_lines(log: str, event: str) -> list[dict[str, Any]]:
    """The worker's JSON log records named `event`, from CRI-format lines."""
    out = []
    for line in log.splitlines():
        if f'"{event}' in line:
            try:
                record = json.loads(line.split(" ", 3)[3])
            except (IndexError, ValueError):
                continue
            if str(record.get("event", "")).startswith(event):
                out.append(record)
    return out


class Effects:
    """The effects table, in the ledger's database."""

    def __init__(self, url: str) -> None:
        self.url, self.table = url, "k8s_effects_" + unique("t").split("-")[1]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {self.table} (event_id TEXT NOT NULL, worker TEXT, "
                         "part INT, off BIGINT)")

    def rows(self) -> list[tuple[str, str, int, int]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return [(r[0], r[1], r[2], r[3]) for r in
                    conn.execute(f"SELECT event_id, worker, part, off FROM {self.table}")]

    def count(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()
        return int(row[0]) if row else 0


class Traffic(Stream):
    """The cluster scenarios' stream (generated events, 10% of them redelivered, so the
    ledger has repeats to catch), checked for repeats at a share a small stream reaches."""

    def __post_init__(self) -> None:
        gen = EventGenerator(seed=uuid.uuid4().int & 0xFFFFFFFF, duplicate_share=0.10)
        self._records = [(r.key, r.value) for r in gen.records(self.count)]
        assert gen.counts.duplicates >= self.count * 0.05, "too few redeliveries in the stream"
        self.expected.update(decode_event(value).id for _key, value in self._records)


@dataclass
class Release:
    """One helm release of the chart in the test namespace, with its topic and effects."""

    kube: Kube
    name: str
    topic: str
    group: str
    partitions: int
    effects: Effects
    port_base: int
    expected: set[str] = field(default_factory=set)
    watch: OffsetWatch | None = None

    def pod(self, i: int) -> str:
        return f"{self.name}-activity-worker-{i}"

    def helm(self, action: str, replicas: int, *extra: str) -> None:
        if action == "install" and KIP848:  # the group's own session timeout, on the broker
            set_group_session(BOOTSTRAP, self.group, SESSION_TIMEOUT_MS)
        values = {
            "image.repository": IMAGE.rsplit(":", 1)[0], "image.tag": IMAGE.rsplit(":", 1)[1],
            "image.pullPolicy": "Never", "hostNetwork": "true", "metrics.portPerPod": "true",
            "metrics.port": str(self.port_base), "replicaCount": str(replicas),
            "kafka.bootstrapServers": BOOTSTRAP, "kafka.topics": f"{{{self.topic}}}",
            "kafka.group": self.group, "kafka.partitions": str(self.partitions),
            "kafka.groupProtocol": PROTOCOL,
            "ledger.url": POSTGRES_URL, "shutdownTimeout": str(SHUTDOWN_TIMEOUT),
            "graceMargin": str(GRACE_MARGIN),
            "config.WORKER_PROCESSORS": "e2e_effects", "config.WORKER_BUILTIN_PROCESSORS": "false",
            "extraEnv[0].name": "PYTHONPATH", "extraEnv[0].value": "/plugins",
            "extraEnv[1].name": "E2E_EFFECTS_TABLE", "extraEnv[1].value": self.effects.table,
            "extraVolumes[0].name": "plugins",
            "extraVolumes[0].configMap.name": "e2e-effects",
            "extraVolumeMounts[0].name": "plugins", "extraVolumeMounts[0].mountPath": "/plugins",
            "extraVolumeMounts[0].readOnly": "true",
            # Modest requests: six pods and the control plane on two shared cores.
            "resources.requests.cpu": "50m", "resources.requests.memory": "96Mi",
            "probes.startup.periodSeconds": "2", "probes.readiness.periodSeconds": "5",
        }
        if not KIP848:  # (a KIP-848 worker refuses it: exit 2)
            values["config.KAFKA_SESSION_TIMEOUT_MS"] = str(SESSION_TIMEOUT_MS)
        args = [*HELM, action, self.name, str(CHART), "--kubeconfig", KUBECONFIG,
                "-n", self.kube.namespace]
        for k, v in values.items():
            args += ["--set", f"{k}={v}"]
        for v in extra:
            args += ["--set", v]
        run(*args)

    def uninstall(self) -> None:
        run(*HELM, "uninstall", self.name, "--kubeconfig", KUBECONFIG, "-n", self.kube.namespace,
            "--wait", "--timeout", "120s")

    def all_ready(self, replicas: int) -> bool:
        sts = self.kube.get("statefulset", f"{self.name}-activity-worker")
        return bool(sts) and sts["status"].get("readyReplicas", 0) == replicas and all(
            self.kube.ready(self.pod(i)) for i in range(replicas))

    def describe(self) -> Any:
        """The group as the broker describes it; None when the broker answers
        GROUP_ID_NOT_FOUND (the consumer-group describe API's answer for a group it does not
        know, which worker.kafka.group_view allows for too; the broker here described an
        unknown group as a Dead classic one)."""
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        try:
            return admin.describe_consumer_groups([self.group], request_timeout=10)[
                self.group].result(timeout=15)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return None
            raise

    def members(self) -> dict[str, list[int]] | None:
        """group.instance.id -> partitions, once the group is Stable (under KIP-848: every
        member holds its target assignment)."""
        desc = self.describe()
        if desc is None or desc.state != ConsumerGroupState.STABLE:
            return None
        return {m.group_instance_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
                for m in desc.members}

    def owned_by(self, replicas: int) -> dict[str, list[int]] | None:
        """The members when exactly `replicas` pods own every partition, else None."""
        members = self.members()
        if members is None or set(members) != {self.pod(i) for i in range(replicas)}:
            return None
        owned = sorted(p for parts in members.values() for p in parts)
        return members if owned == list(range(self.partitions)) else None

    def stream(self, count: int, rate: float = RATE) -> Stream:
        s = Traffic(BOOTSTRAP, self.topic, count, rate)
        self.expected |= s.expected
        return s.start()

    def settle(self, stream: Stream, what: str, timeout: float = 240) -> float:
        """Wait for lag 0 and one effect per event so far; assert lost = 0, duplicates = 0,
        no commit went backwards. Returns the seconds it took after the stream was produced."""
        stream.join()
        produced = time.monotonic()
        wait_for(lambda: sum(lag(BOOTSTRAP, self.group, self.topic, self.partitions).values())
                 == 0 and self.effects.count() >= len(self.expected), timeout,
                 f"{what}: lag 0 and every effect", interval=1)
        took = time.monotonic() - produced
        counts = Counter(r[0] for r in self.effects.rows())
        duplicates = sum(1 for n in counts.values() if n > 1)
        lost = len(self.expected - counts.keys())
        assert (lost, duplicates) == (0, 0), f"{what}: lost {lost}, duplicated {duplicates}"
        assert counts.keys() == self.expected, "effects of events that were not produced"
        assert self.watch is None or self.watch.regressions == [], self.watch.regressions
        return took

    def recover(self, replicas: int, stream: Stream, what: str) -> tuple[float, float]:
        """After a disruption: (seconds until every pod is Ready again, seconds from the end
        of the stream to lag 0 with every effect), once `replicas` members own every
        partition."""
        back = timed_wait(lambda: self.all_ready(replicas), 180, f"{what}: every pod Ready")
        wait_for(lambda: self.owned_by(replicas), 120, f"{what}: every partition owned",
                 interval=1)
        return back, self.settle(stream, what)

    def wait_pdb_allows(self, disruptions: int) -> None:
        wait_for(lambda: (self.kube.get("pdb", f"{self.name}-activity-worker") or {})
                 .get("status", {}).get("disruptionsAllowed") == disruptions, 60,
                 f"{self.name}'s PDB to allow {disruptions} disruption(s)", interval=1)

    def check_line(self, what: str) -> str:
        offsets = committed(BOOTSTRAP, self.group, self.topic, self.partitions)
        return (f"{what}: lag 0, committed {sum(offsets.values())} offsets, "
                f"{len(self.expected)} events -> {self.effects.count()} effects, "
                "lost 0, duplicates 0")


BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:49092")
POSTGRES_URL = os.environ.get("K8S_E2E_POSTGRES_URL", "")


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    assert POSTGRES_URL, "K8S_E2E_POSTGRES_URL is not set (deploy/k8s/e2e sets it)"
    k = Kube(unique("aw-e2e"))
    run("kubectl", "--kubeconfig", KUBECONFIG, "create", "namespace", k.namespace)
    cm = subprocess.run(["kubectl", "--kubeconfig", KUBECONFIG, "-n", k.namespace, "create",
                         "configmap", "e2e-effects", "--dry-run=client", "-o", "json",
                         "--from-literal", f"e2e_effects.py={EFFECTS_MODULE}"],
                        capture_output=True, text=True, check=True)
    subprocess.run(["kubectl", "--kubeconfig", KUBECONFIG, "-n", k.namespace, "apply", "-f", "-"],
                   input=cm.stdout, capture_output=True, text=True, check=True)
    yield k
    run("kubectl", "--kubeconfig", KUBECONFIG, "delete", "namespace", k.namespace,
        "--wait=false", check=False)


@pytest.fixture(scope="module")
def aw(kube: Kube) -> Iterator[Release]:
    topic = unique("k8s-e2e")
    create_topics(BOOTSTRAP, topic, PARTITIONS)
    rel = Release(kube, "aw", topic, unique("k8s-e2e"), PARTITIONS, Effects(POSTGRES_URL),
                  PORT_BASE)
    yield rel
    if rel.watch:
        rel.watch.stop()


def timed_wait(cond: Any, timeout: float, what: str, interval: float = 0.5) -> float:
    started = time.monotonic()
    wait_for(cond, timeout, what, interval=interval)
    return time.monotonic() - started


def test_install_3_replicas_on_6_partitions_reaches_lag_0(aw: Release) -> None:
    started = time.monotonic()
    aw.helm("install", 3)
    stream = aw.stream(1500)
    wait_for(lambda: aw.all_ready(3), 300, "3 pods Ready", interval=1)
    ready = time.monotonic() - started
    wait_for(lambda: aw.owned_by(3), 120, "3 members owning the 6 partitions", interval=1)
    aw.watch = OffsetWatch(BOOTSTRAP, aw.group, aw.topic, PARTITIONS)
    took = aw.settle(stream, "install")
    members = aw.owned_by(3)
    assert members and all(len(p) == 2 for p in members.values()), members
    kind = aw.describe().type.name.lower()  # the protocol the pods' group really runs
    assert kind == PROTOCOL, f"kafka.groupProtocol={PROTOCOL}, but the group is a {kind} group"
    note(f"install: helm install -> 3 pods Ready in {ready:.1f}s; lag 0 {took:.1f}s after the "
         f"last of 1500 events; a {kind} group; assignment {members}")
    note(aw.check_line("install"))


def test_a_deleted_pod_comes_back_with_its_partitions_and_commits_on_sigterm(
        aw: Release, kube: Kube) -> None:
    members = aw.owned_by(3)
    assert members, "the group is not stable with 3 members"
    victim = aw.pod(1)
    others = [aw.pod(0), aw.pod(2)]
    uids = {p: kube.uid(p) for p in [victim, *others]}
    revoked_before = {p: len(json_lines(kube.pod_log(p, str(uids[p])), "partitions revoked"))
                      for p in others}
    stream = aw.stream(2400)
    stream.wait_produced(0.3)
    old_workers = {r[1] for r in aw.effects.rows() if r[1].startswith(victim + "/")}
    assert len(old_workers) == 1, old_workers
    deleted = time.monotonic()
    kube.kubectl("delete", "pod", victim, "--wait=false")
    old_uid = str(uids[victim])

    def stopped() -> dict[str, Any] | None:
        done = json_lines(kube.pod_log(victim, old_uid), "worker summary")
        return done[-1] if done else None

    summary = wait_for(stopped, SHUTDOWN_TIMEOUT + GRACE_MARGIN + 30,
                       "the deleted pod's worker to stop", interval=0.1)
    stop_s = time.monotonic() - deleted
    # Read before the new pod exists (the StatefulSet makes it once the old one is gone).
    at_stop = committed(BOOTSTRAP, aw.group, aw.topic, PARTITIONS)
    assert summary["exit_code"] == 0, summary
    assert stop_s < SHUTDOWN_TIMEOUT + GRACE_MARGIN, f"stopped after {stop_s:.1f}s"
    back = timed_wait(lambda: kube.uid(victim) not in (None, old_uid) and kube.ready(victim),
                      180, f"{victim} back under its name")
    back += stop_s
    took = aw.settle(stream, "pod delete")

    # Static membership: the same partitions, and no revocation anywhere.
    assert aw.owned_by(3) == members, (aw.owned_by(3), members)
    # The new process was given its predecessor's partitions and nothing else (incremental
    # assignments: a KIP-848 member may be sent them in more than one step, an empty one first).
    new_uid = str(kube.uid(victim))
    given = [sorted(int(n.rsplit("[", 1)[1].rstrip("]")) for n in r["partitions"])
             for r in json_lines(kube.pod_log(victim, new_uid), "partitions assigned")]
    assert sorted(p for g in given for p in g) == members[victim], (given, members[victim])
    revoked_after = {p: len(json_lines(kube.pod_log(p, str(uids[p])), "partitions revoked"))
                     for p in others}
    assert revoked_after == revoked_before, "another pod saw a revocation"
    # SIGTERM committed everything the old process did, and the new one started right there.
    rows = aw.effects.rows()
    mine = members[victim]
    last_old = {p: max((r[3] for r in rows if r[2] == p and r[1] in old_workers), default=-1)
                for p in mine}
    first_new = {p: min((r[3] for r in rows if r[2] == p and r[1].startswith(victim + "/")
                         and r[1] not in old_workers), default=None) for p in mine}
    for p in mine:
        assert at_stop[p] > last_old[p], f"partition {p}: {at_stop[p]} <= {last_old[p]}"
        began = first_new[p]
        assert began is None or began >= at_stop[p], f"partition {p}: redelivered from {began}"
    note(f"pod delete: {victim} (partitions {mine}) SIGTERM -> worker exit 0 with its commit in "
         f"{stop_s:.1f}s (grace {SHUTDOWN_TIMEOUT + GRACE_MARGIN}s; committed "
         f"{[at_stop[p] for p in mine]} > its last effects' offsets {list(last_old.values())}, "
         f"the new process began at {list(first_new.values())}); back under the same name and "
         f"Ready {back:.1f}s after the delete, same partitions (its assignments: {given}), "
         f"revocations seen by the others: 0; lag 0 {took:.1f}s after the stream")
    note(aw.check_line("pod delete"))


@pytest.mark.parametrize(("before", "after"), [(3, 2), (2, 4)])
def test_scaling_reassigns_every_partition(aw: Release, before: int, after: int) -> None:
    assert aw.owned_by(before), f"the group is not stable with {before} members"
    stream = aw.stream(1500)
    stream.wait_produced(0.2)
    aw.helm("upgrade", after)
    owned = timed_wait(lambda: aw.owned_by(after), 180,
                       f"{after} members owning every partition", interval=0.5)
    wait_for(lambda: aw.all_ready(after), 180, f"{after} pods Ready", interval=1)
    took = aw.settle(stream, f"scale {before}->{after}")
    why = (f" (the removed static member's partitions wait for its session timeout, "
           f"{SESSION_TIMEOUT_MS // 1000}s)" if after < before else "")
    note(f"scale {before}->{after}: every partition owned again {owned:.1f}s after helm "
         f"upgrade{why}; assignment {aw.owned_by(after)}; lag 0 {took:.1f}s "
         "after the stream")
    note(aw.check_line(f"scale {before}->{after}"))


def test_the_pdb_allows_one_eviction_and_refuses_the_second(aw: Release, kube: Kube) -> None:
    aw.wait_pdb_allows(1)
    stream = aw.stream(1200)
    stream.wait_produced(0.3)
    first = kube.evict(aw.pod(0))
    second = kube.evict(aw.pod(3))
    assert first.returncode == 0, first.stderr
    assert second.returncode != 0 and "TooManyRequests" in second.stderr, second
    assert "disruption budget" in second.stderr, second.stderr
    back, took = aw.recover(4, stream, "eviction")
    refusal = second.stderr.strip().split("): ", 1)[-1]
    note(f"eviction: {aw.pod(0)} evicted (201), {aw.pod(3)} refused right after (429: "
         f"{refusal}); all 4 Ready again {back:.1f}s later; lag 0 "
         f"{took:.1f}s after the stream")
    note(aw.check_line("eviction"))


def test_a_node_drain_evicts_one_pod_and_waits_on_the_pdb(aw: Release, kube: Kube) -> None:
    """`kubectl drain` of the only node: it evicts one pod, then the PDB refuses the rest; the
    evicted pod cannot come back on a cordoned node, so the drain times out (on a real cluster
    the pod comes back elsewhere and the drain goes on, one pod at a time)."""
    aw.wait_pdb_allows(1)
    (node,) = [n["metadata"]["name"] for n in kube.get("nodes")["items"]]
    stream = aw.stream(1500)
    stream.wait_produced(0.2)
    try:
        drain = kube.kubectl("drain", node, "--pod-selector", "app.kubernetes.io/instance=aw",
                             "--delete-emptydir-data", "--ignore-daemonsets", "--timeout",
                             "30s", check=False)
    finally:
        kube.kubectl("uncordon", node)
    evicted = re.findall(r"pod/(\S+) evicted", drain.stdout + drain.stderr)
    refusals = (drain.stdout + drain.stderr).count("violate the pod's disruption budget")
    assert drain.returncode != 0, drain.stdout
    assert len(evicted) == 1 and refusals >= 1, drain.stdout + drain.stderr
    back, took = aw.recover(4, stream, "drain")
    note(f"drain: kubectl drain {node} evicted {evicted[0]} only; {refusals} evictions refused "
         f"by the PDB over its 30s timeout; after uncordon all 4 Ready in {back:.1f}s; lag 0 "
         f"{took:.1f}s after the stream")
    note(aw.check_line("drain"))


def test_a_replica_beyond_the_partitions_is_ready_and_evictable(kube: Kube) -> None:
    topic = unique("k8s-idle")
    create_topics(BOOTSTRAP, topic, 1)
    idle = Release(kube, "idle", topic, unique("k8s-idle"), 1, Effects(POSTGRES_URL),
                   PORT_BASE + 10)
    idle.helm("install", 2)
    stream = idle.stream(300, rate=100)
    wait_for(lambda: idle.all_ready(2), 300, "2 idle-release pods Ready", interval=1)
    members = wait_for(lambda: idle.owned_by(2), 120, "the partition owned", interval=1)
    (spare,) = [p for p, parts in members.items() if not parts]
    idle.settle(stream, "idle")
    idle.wait_pdb_allows(1)
    evicted = kube.evict(spare)
    assert evicted.returncode == 0, evicted.stderr
    wait_for(lambda: idle.all_ready(2), 180, "the evicted spare back", interval=1)
    note(f"idle replica: 2 replicas on 1 partition, {spare} Ready with no partition, the PDB "
         f"allowed 1 disruption, its eviction accepted (201); assignment {members}")
    note(idle.check_line("idle replica"))
    idle.uninstall()


def test_a_bad_setting_exits_2_with_its_sentence_as_the_termination_message(
        kube: Kube) -> None:
    bare = unique("k8s-nodlq")
    create_topic(BOOTSTRAP, bare, 1)  # and no dead-letter topic
    bad = Release(kube, "bad", bare, unique("k8s-bad"), 1, Effects(POSTGRES_URL), PORT_BASE + 15)
    bad.helm("install", 1)

    def terminated() -> Any:
        pod = kube.get("pod", bad.pod(0))
        statuses = (pod or {}).get("status", {}).get("containerStatuses", [])
        if not statuses:
            return None
        return statuses[0].get("lastState", {}).get("terminated") or statuses[0]["state"].get(
            "terminated")

    state = wait_for(terminated, 180, "the bad release's worker to exit", interval=1)
    message = state.get("message", "").strip().splitlines()
    assert state["exitCode"] == 2, state
    assert message and f"{bare}.dlq do not exist" in message[-1], state
    assert all(o < 0 for o in committed(BOOTSTRAP, bad.group, bare, 1).values())
    assert bad.effects.count() == 0
    note(f"bad setting: exit 2, termination message: {message[-1][:160]}")
    bad.uninstall()


@pytest.mark.skipif(not KEDA, reason="K8S_E2E_KEDA=0: KEDA's scenario was not asked for")
def test_keda_scales_out_on_lag_and_back(aw: Release, kube: Kube) -> None:
    """The chart's ScaledObject under KEDA's operator and metrics API server (built from the Go
    module proxy, run by deploy/k8s/keda): a burst on a slow processor builds lag, KEDA's HPA
    scales the StatefulSet out, the lag drains with every effect once, and with no lag left it
    scales back to the minimum."""
    aw.uninstall()  # its scenarios are done: the node's two cores go to the scale-out
    topic = unique("k8s-keda")
    create_topics(BOOTSTRAP, topic, PARTITIONS)
    rel = Release(kube, "scaled", topic, unique("k8s-keda"), PARTITIONS, Effects(POSTGRES_URL),
                  PORT_BASE + 20)
    policy = ["type=Pods", "value=4", "periodSeconds=15"]
    rel.helm("install", 1, "keda.enabled=true", "keda.minReplicaCount=1",
             "keda.pollingInterval=5", "keda.cooldownPeriod=30", "keda.trigger.lagThreshold=300",
             "keda.behavior.scaleUp.stabilizationWindowSeconds=0",
             *[f"keda.behavior.scaleUp.policies[0].{p}" for p in policy],
             "keda.behavior.scaleDown.stabilizationWindowSeconds=20",
             *[f"keda.behavior.scaleDown.policies[0].{p}" for p in policy],
             "extraEnv[2].name=E2E_EFFECT_DELAY", "extraEnv[2].value=0.03")
    wait_for(lambda: rel.all_ready(1), 300, "the scaled release's first pod Ready", interval=1)
    hpa = wait_for(lambda: (kube.get("hpa", "keda-hpa-scaled-activity-worker") or {}).get("spec"),
                   120, "KEDA to make the HPA", interval=1)
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, PARTITIONS), hpa

    def replicas() -> int:
        sts = kube.get("statefulset", "scaled-activity-worker")
        return int(sts["spec"]["replicas"]) if sts else 0

    started = time.monotonic()
    stream = rel.stream(4000, rate=2000)
    seen: list[tuple[float, int]] = []

    def scaled_out() -> bool:
        seen.append((time.monotonic() - started, replicas()))
        return seen[-1][1] > 1

    wait_for(scaled_out, 240, "KEDA to scale out on the lag", interval=1)
    out_at, first_out = seen[-1]
    took = rel.settle(stream, "keda", timeout=600)
    drained_at = time.monotonic() - started

    def scaled_in() -> bool:
        seen.append((time.monotonic() - started, replicas()))
        return seen[-1][1] == 1

    wait_for(scaled_in, 300, "KEDA to scale back to 1 with no lag", interval=1)
    back_at = seen[-1][0]
    peak = max(n for _t, n in seen)
    wait_for(lambda: rel.owned_by(1), 120, "one member owning every partition", interval=1)
    note(f"keda: a burst of 4000 events on a slow processor -> HPA scaled 1->{first_out} "
         f"{out_at:.1f}s after the burst began, peak {peak} replicas; lag 0 at {drained_at:.1f}s "
         f"({took:.1f}s after the last event); back to 1 replica {back_at - drained_at:.1f}s "
         "after lag 0")
    note(rel.check_line("keda"))
