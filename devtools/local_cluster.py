"""A local KRaft Apache Kafka cluster of several combined broker+controller nodes, for tests of
replication and failover: `deploy/local/kafka up --nodes 3` (devtools/local_broker.py runs the
command line; this module is the cluster half).

Node i (1..n) listens on `port + 2(i-1)` (clients) and the next port (its controller), keeps its
data, pid file and log in `<data dir>/node-<i>/`, and is one voter of a static quorum of all n.
All nodes are formatted with one cluster id, kept in `<data dir>/cluster.id`. Internal topics and
new topics get replication factor min(3, n) and `min.insync.replicas` 2, as in production.

`up` starts the nodes that are not running (all together: a lone node waits for a quorum) and
returns once every node is in the metadata and a produce with acks=all went through. `down` stops
them together (one by one, the last one waits for a quorum it cannot reach). `LocalCluster` also
stops, kills, freezes and restarts one node by id, for the failover tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devtools.local_broker import (
    EXIT_NOT_RUNNING,
    EXIT_OK,
    HOST,
    STOP_GRACE_S,
    BrokerSettings,
    LauncherError,
    Out,
    ProbeFailed,
    _lock,
    _new_cluster_id,
    _print,
    _wait_gone,
    launch_jvm,
    log_tail,
    port_free,
    probe,
    running_pid,
)

CLUSTER_PORT = 19092  # the first node's client port: a cluster runs beside the single broker
CLUSTER_HEAP = "512M"
NODE_ACTIONS = ("stop", "kill", "freeze", "thaw", "start")


@dataclass(frozen=True, slots=True)
class LocalCluster:
    """The nodes of one local cluster, from the settings of its first node."""

    nodes: int
    first: BrokerSettings  # port, controller port and data dir of the cluster as a whole

    @property
    def node_ids(self) -> range:
        return range(1, self.nodes + 1)

    @property
    def replication(self) -> int:
        return min(3, self.nodes)

    @property
    def cluster_id_file(self) -> Path:
        return self.first.data_dir / "cluster.id"

    @property
    def bootstrap(self) -> str:
        return ",".join(self.node(i).bootstrap for i in self.node_ids)

    def node(self, node_id: int) -> BrokerSettings:
        if node_id not in self.node_ids:
            raise LauncherError(
                f"There is no node {node_id}: this cluster has nodes 1 to {self.nodes}."
            )
        voters = tuple((i, self._port(i) + 1) for i in self.node_ids)
        return dataclasses.replace(
            self.first,
            port=self._port(node_id),
            controller_port=self._port(node_id) + 1,
            data_dir=self.first.data_dir / f"node-{node_id}",
            node_id=node_id,
            voters=voters,
            replication=self.replication,
            cluster_id=self._cluster_id(),
        )

    def _port(self, node_id: int) -> int:
        return self.first.port + 2 * (node_id - 1)

    def _cluster_id(self) -> str | None:
        try:
            return self.cluster_id_file.read_text().strip() or None
        except OSError:
            return None

    def pid(self, node_id: int) -> int | None:
        return running_pid(self.node(node_id))

    # -- whole cluster ---------------------------------------------------------------------
    def up(self, out: Out = _print) -> int:
        t0 = time.monotonic()
        with _lock(self.first):
            if self._cluster_id() is None:
                self.cluster_id_file.write_text(_new_cluster_id() + "\n")
            started = {i: launch_jvm(self.node(i), out) for i in self.node_ids if not self.pid(i)}
            if not started:
                out(f"checking: all {self.nodes} nodes are already running")
            try:
                self.wait_ready(self.first.timeout_s, started)
            except LauncherError:
                for i, proc in started.items():
                    if proc.poll() is None:
                        _signal_all([proc.pid], signal.SIGKILL)
                    self.node(i).pid_file.unlink(missing_ok=True)
                raise
        out(f"ready: {self.nodes} nodes answered a produce with acks=all in "
            f"{time.monotonic() - t0:.1f}s")
        self.report(out)
        return EXIT_OK

    def wait_ready(self, timeout_s: float,
                   started: dict[int, subprocess.Popen[bytes]] | None = None) -> None:
        """Until every node is in the metadata and a produce with acks=all (to a topic on all
        of them) is read back and committed; fail fast when a node this call started dies."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            for i, proc in (started or {}).items():
                if proc.poll() is not None:
                    node = self.node(i)
                    raise LauncherError(f"Kafka node {i} exited during start-up: see "
                                        f"{node.log_file}\n" + log_tail(node))
            try:
                probe(self.bootstrap, min(15.0, max(1.0, deadline - time.monotonic())),
                      brokers=self.nodes)
                return
            except ProbeFailed as exc:
                last = str(exc)
                time.sleep(0.2)
        raise LauncherError(f"The {self.nodes}-node cluster at {self.bootstrap} was not ready "
                            f"within {timeout_s:g}s ({last}): see the node logs under "
                            f"{self.first.data_dir}, or raise --timeout.")

    def down(self, out: Out = _print) -> int:
        with _lock(self.first):
            pids = {i: pid for i in self.node_ids if (pid := self.pid(i)) is not None}
            if not pids:
                out(f"not running: no node of the cluster in {self.first.data_dir}; nothing to "
                    "stop")
                return EXIT_OK
            t0 = time.monotonic()
            # Together: a node stopped last would wait for a quorum that has already gone.
            _signal_all(pids.values(), signal.SIGCONT)  # a frozen node must hear SIGTERM
            _signal_all(pids.values(), signal.SIGTERM)
            how = "SIGTERM"
            if not all(_wait_gone(pid, self.node(i), STOP_GRACE_S) for i, pid in pids.items()):
                _signal_all(pids.values(), signal.SIGKILL)
                how = f"SIGKILL after {STOP_GRACE_S:.0f}s"
                for i, pid in pids.items():
                    if not _wait_gone(pid, self.node(i), 10.0):
                        raise LauncherError(f"Kafka node {i} (pid {pid}) survived SIGKILL: end "
                                            "it by hand.")
            for i in pids:
                self.node(i).pid_file.unlink(missing_ok=True)
            self._wait_ports_free()
        out(f"stopped: {len(pids)} nodes ({how}) in {time.monotonic() - t0:.1f}s")
        return EXIT_OK

    def _wait_ports_free(self) -> None:
        ports = [p for i in self.node_ids for p in self.node(i).ports]
        deadline = time.monotonic() + 15.0
        while not all(port_free(p) for p in ports):
            if time.monotonic() > deadline:
                busy = [p for p in ports if not port_free(p)]
                raise LauncherError(f"The nodes stopped but ports {busy} are still taken after "
                                    "15s: find the owner with `ss -ltnp`.")
            time.sleep(0.1)

    def status(self, out: Out = _print) -> int:
        """One line per node, then the cluster's readiness; exit 0 only when all are ready."""
        down = frozen = 0
        for i in self.node_ids:
            node = self.node(i)
            pid = self.pid(i)
            if pid is None:
                down += 1
                out(f"node {i}: not running (port {node.port}, log {node.log_file})")
            else:
                state = "frozen (SIGSTOP)" if _is_stopped(pid) else "running"
                frozen += state != "running"
                out(f"node {i}: {state}, pid {pid}, port {node.port}, log {node.log_file}")
        if down == self.nodes:
            out(f"not running: no node of the cluster in {self.first.data_dir}")
            return EXIT_NOT_RUNNING
        try:
            probe(self.bootstrap, min(self.first.timeout_s, 15.0), brokers=self.nodes)
        except ProbeFailed as exc:
            out(f"not ready: {exc}")
            return EXIT_NOT_RUNNING
        if down or frozen:
            out(f"degraded: {self.nodes - down - frozen} of {self.nodes} nodes answer; the "
                "cluster serves clients, `up` restarts the stopped nodes")
            self.report(out)
            return EXIT_NOT_RUNNING
        out(f"running: all {self.nodes} nodes are ready")
        self.report(out)
        return EXIT_OK

    def report(self, out: Out) -> None:
        out(f"replication: factor {self.replication}, min.insync.replicas "
            f"{min(2, self.replication)} (internal topics and the default for new ones)")
        out(f"bootstrap: {self.bootstrap}")

    # -- one node --------------------------------------------------------------------------
    def node_action(self, action: str, node_id: int, out: Out = _print) -> int:
        node = self.node(node_id)
        if action == "start":
            self.start_node(node_id, out=out)
            return EXIT_OK
        pid = self.pid(node_id)
        if pid is None:
            out(f"node {node_id}: not running; nothing to {action}")
            return EXIT_NOT_RUNNING
        if action == "kill":
            self.kill_node(node_id)
        elif action == "stop":
            self.stop_node(node_id)
        elif action == "freeze":
            self.freeze_node(node_id)
        elif action == "thaw":
            self.thaw_node(node_id)
        else:
            raise LauncherError(f"Unknown node action {action!r}: use one of "
                                f"{', '.join(NODE_ACTIONS)}.")
        out(f"node {node_id}: {action} done (pid {pid}, port {node.port})")
        return EXIT_OK

    def _live_pid(self, node_id: int) -> int:
        pid = self.pid(node_id)
        if pid is None:
            raise LauncherError(f"Kafka node {node_id} is not running.")
        return pid

    def kill_node(self, node_id: int) -> None:
        """SIGKILL, as a crash or an OOM kill: no clean shutdown, no leadership handed over."""
        pid = self._live_pid(node_id)
        _signal_all([pid], signal.SIGKILL)
        if not _wait_gone(pid, self.node(node_id), 10.0):
            raise LauncherError(f"Kafka node {node_id} (pid {pid}) survived SIGKILL.")

    def stop_node(self, node_id: int) -> None:
        """SIGTERM, a clean shutdown (leaders move away first), as in a rolling restart."""
        pid = self._live_pid(node_id)
        _signal_all([pid], signal.SIGCONT)
        _signal_all([pid], signal.SIGTERM)
        if not _wait_gone(pid, self.node(node_id), STOP_GRACE_S):
            _signal_all([pid], signal.SIGKILL)
            _wait_gone(pid, self.node(node_id), 10.0)

    def freeze_node(self, node_id: int) -> None:
        """SIGSTOP: the node holds its connections but answers nothing (a long GC pause)."""
        _signal_all([self._live_pid(node_id)], signal.SIGSTOP)

    def thaw_node(self, node_id: int) -> None:
        _signal_all([self._live_pid(node_id)], signal.SIGCONT)

    def start_node(self, node_id: int, timeout_s: float | None = None, out: Out = _print) -> None:
        """Start a node that is down and wait until it is back in the cluster: in the metadata,
        and every partition's replicas in sync again (as a rolling restart waits)."""
        timeout = self.first.timeout_s if timeout_s is None else timeout_s
        node = self.node(node_id)
        with _lock(self.first):
            proc = launch_jvm(node, out) if self.pid(node_id) is None else None
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise LauncherError(f"Kafka node {node_id} exited during start-up: see "
                                    f"{node.log_file}\n" + log_tail(node))
            try:
                behind = out_of_sync(self.bootstrap, self.nodes)
            except ProbeFailed as exc:
                behind, last = ["?"], str(exc)
            if not behind:
                out(f"node {node_id}: back in the cluster, all replicas in sync")
                return
            last = f"{len(behind)} partitions out of sync, e.g. {behind[0]}"
            time.sleep(0.5)
        raise LauncherError(f"Kafka node {node_id} was not back in sync within {timeout:g}s "
                            f"({last}): see {node.log_file}.")


def out_of_sync(bootstrap: str, brokers: int) -> list[str]:
    """The partitions whose in-sync replicas are fewer than their replicas (empty once a
    restarted node has caught up); ProbeFailed when the metadata lacks a broker."""
    from confluent_kafka import KafkaException

    from devtools.local_broker import _QUIET
    from worker.kafka.clients import new_admin

    try:
        md = new_admin({"bootstrap.servers": bootstrap}, logger=_QUIET).list_topics(timeout=5)
    except KafkaException as exc:
        raise ProbeFailed(f"no metadata from {bootstrap}: {exc}") from None
    if len(md.brokers) < brokers:
        raise ProbeFailed(f"metadata lists {len(md.brokers)} of {brokers} brokers")
    return [f"{t.topic}[{p.id}]" for t in md.topics.values() for p in t.partitions.values()
            if len(p.isrs) < len(p.replicas)]


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _is_stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "T"


def cluster_from(nodes: int, first: BrokerSettings, *, port_given: bool, data_dir_given: bool,
                 heap_given: bool) -> LocalCluster:
    """The cluster of `nodes` nodes; where the operator gave no port, data dir or heap, the
    cluster's own defaults (beside the single broker, 512 MB a node)."""
    if not 2 <= nodes <= 9:
        raise LauncherError(f"--nodes {nodes}: give 1 (a single broker) or 2 to 9 nodes.")
    changes: dict[str, object] = {}
    if not port_given:
        changes["port"] = CLUSTER_PORT
    if not data_dir_given:
        changes["data_dir"] = first.data_dir.parent / "kafka-cluster"
    if not heap_given:
        changes["heap"] = CLUSTER_HEAP
    first = dataclasses.replace(first, **changes)  # type: ignore[arg-type]
    return LocalCluster(nodes=nodes, first=dataclasses.replace(
        first, controller_port=first.port + 1))


__all__ = ["CLUSTER_PORT", "HOST", "NODE_ACTIONS", "LocalCluster", "cluster_from", "out_of_sync"]
