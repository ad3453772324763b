"""The Helm chart and its offline check (deploy/validate, which ./scripts/test runs on the
chart's value sets): the check fails on a broken manifest and on an empty render; the chart
refuses unsafe values with a sentence saying what to change; what it renders is what the
worker and Kubernetes expect (settings the worker knows, the grace period from the shutdown
bound, static membership from the pod name, only known KEDA keys)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.kafka.config import CLASSIC_ONLY
from worker.settings import OPTIONS, add_arguments, from_args

REPO = Path(__file__).resolve().parents[2]
VALIDATE = REPO / "deploy" / "validate"
CHART = REPO / "deploy" / "helm" / "activity-worker"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KEDA_KEYS = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold",
             "activationLagThreshold", "offsetResetPolicy", "limitToPartitionsWithLag",
             "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset"}

pytestmark = pytest.mark.timeout(900)  # the first run builds helm and kubeconform


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VALIDATE), *args], capture_output=True, text=True,
                          timeout=880, check=False)


def render(*values: str, files: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    args = ["helm", "template", "aw", str(CHART), "--kube-version", "1.31.0"]
    for f in files:
        args += ["-f", str(f)]
    for v in values:
        args += ["--set", v]
    return validate(*args)


def resources(*values: str, files: tuple[Path, ...] = ()) -> dict[str, dict[str, Any]]:
    out = render(*values, files=files)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    # By kind; the dashboard's ConfigMap apart from the settings' one, the webhook ingress's
    # resources apart from the worker's.
    suffixes = ("-dashboard", "-webhooks")
    return {d["kind"] + next((f"/{x[1:]}" for x in suffixes
                              if d["metadata"]["name"].endswith(x)), ""): d for d in docs}


BROKEN_STATEFULSET = """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: broken
spec:
  replicas: two
  podManagmentPolicy: Parallel
  serviceName: broken
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: worker
          image: activity-worker:0.1.0
"""

BROKEN_SCALEDOBJECT = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: broken
spec:
  scaleTargetRef:
    name: broken
  maxReplicas: 4
  triggers:
    - type: kafka
      metadata:
        topic: customer-activity
"""


@pytest.mark.parametrize(("text", "expected"), [
    (BROKEN_STATEFULSET, ["podManagmentPolicy", "replicas"]),
    (BROKEN_SCALEDOBJECT, ["maxReplicas"]),
], ids=["statefulset", "scaledobject"])
def test_the_check_fails_on_a_broken_manifest(tmp_path: Path, text: str,
                                              expected: list[str]) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text(text)
    out = validate("manifests", str(bad))
    assert out.returncode != 0, out.stdout
    for word in expected:  # every error is reported, not only the first
        assert word in out.stdout, out.stdout


def test_the_check_passes_the_same_manifest_once_fixed(tmp_path: Path) -> None:
    good = tmp_path / "fixed.yaml"
    good.write_text(BROKEN_STATEFULSET.replace("replicas: two", "replicas: 2")
                    .replace("podManagmentPolicy", "podManagementPolicy"))
    out = validate("manifests", str(good))
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_empty_render_fails_the_check(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n# Source: nothing\n")
    out = validate("manifests", str(empty))
    assert out.returncode != 0
    assert "empty render" in out.stderr


@pytest.mark.parametrize(("values", "says"), [
    (["ledger.kind=sqlite", "persistence.enabled=true", "replicaCount=3"],
     "ledger.kind=sqlite with up to 3 replicas"),
    (["ledger.kind=memory", "replicaCount=2"], "ledger.kind=memory with up to 2 replicas"),
    (["ledger.kind=sqlite", "replicaCount=1"], "needs kind=StatefulSet and persistence.enabled"),
    (["ledger.kind=sqlite", "persistence.enabled=true", "replicaCount=1", "keda.enabled=true",
      "kafka.partitions=4"], "ledger.kind=sqlite with up to 4 replicas"),
    ([], "ledger.kind=postgresql needs its URL"),
    (["ledger.url=redis://r:6379/0"], "redis:// URL but ledger.kind=postgresql"),
    (["ledger.url=postgresql://db/aw", "kind=Deployment", "staticMembership=true"],
     "staticMembership=true needs kind=StatefulSet"),
    (["ledger.url=postgresql://db/aw", "kind=Deployment",
      "kafka.processingGuarantee=exactly-once"],
     "kafka.processingGuarantee=exactly-once needs static membership"),
    (["ledger.url=postgresql://db/aw", "staticMembership=false",
      "kafka.processingGuarantee=exactly-once"],
     "kafka.processingGuarantee=exactly-once needs static membership"),
    (["ledger.url=postgresql://db/aw", "kafka.processingGuarantee=exactly_once"],
     "processingGuarantee"),
    (["ledger.url=postgresql://db/aw", "keda.enabled=true"], "keda.enabled needs kafka.partitions"),
    (["ledger.url=postgresql://db/aw", "keda.enabled=true", "kafka.partitions=4",
      "keda.maxReplicaCount=6"], "keda.maxReplicaCount=6 is above kafka.partitions=4"),
    (["ledger.url=postgresql://db/aw", "keda.enabled=true", "kafka.partitions=4",
      "keda.trigger.lagTreshold=10"], "keda.trigger.lagTreshold is not a Kafka scaler setting"),
    (["ledger.url=postgresql://db/aw", "keda.enabled=true", "kafka.partitions=4",
      "keda.trigger.allowIdleConsumers=true"], "cannot both be true"),
    (["ledger.url=postgresql://db/aw", "config.SHUTDOWN_TIMEOUT=5"],
     "keys are WORKER_<FLAG> or KAFKA_<PROPERTY>"),
    (["ledger.url=postgresql://db/aw", "replicaCont=3"],
     "additional properties 'replicaCont' not allowed"),
    (["ledger.url=postgresql://db/aw", "kafka.partitons=3"],
     "additional properties 'partitons' not allowed"),
    (["ledger.url=postgresql://db/aw", "metrics.portPerPod=true"],
     "metrics.portPerPod needs hostNetwork=true and kind=StatefulSet"),
    (["ledger.url=postgresql://db/aw", "metrics.portPerPod=true", "hostNetwork=true",
      "podMonitor.enabled=true"], "no fixed port for a PodMonitor"),
], ids=["sqlite-3", "memory-2", "sqlite-emptydir", "sqlite-keda", "no-url", "kind-vs-url",
        "deployment-static", "eos-deployment", "eos-dynamic", "eos-typo", "keda-no-partitions",
        "keda-above-partitions", "keda-typo",
        "keda-idle-and-limit", "config-key", "typo-top-level", "typo-nested",
        "port-per-pod-no-host-network", "port-per-pod-podmonitor"])
def test_the_chart_refuses_unsafe_values(values: list[str], says: str) -> None:
    out = render(*values)
    assert out.returncode != 0, out.stdout[:2000]
    assert says in out.stderr, out.stderr


@pytest.mark.parametrize("prop", CLASSIC_ONLY)
def test_the_consumer_protocol_refuses_the_worker_side_group_settings(prop: str) -> None:
    """The properties a KIP-848 worker refuses (exit 2) are refused at install instead."""
    env = "KAFKA_" + prop.upper().replace(".", "_")
    values = ["ledger.url=postgresql://db/aw", f"config.{env}=1"]
    out = render(*values, "kafka.groupProtocol=consumer")
    assert out.returncode != 0, out.stdout[:2000]
    assert f"config.{env} cannot be set with kafka.groupProtocol=consumer" in out.stderr, \
        out.stderr
    assert resources(*values)["ConfigMap"]["data"][env] == "1"  # classic: the worker's own


def _settings_env(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    env = dict(docs["ConfigMap"]["data"])
    env |= docs.get("Secret", {}).get("stringData", {})
    return env


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_rendered_settings_are_settings_the_worker_accepts(values: Path) -> None:
    docs = resources(files=(values,))
    env = _settings_env(docs)
    known = {opt.env for opt in OPTIONS} | {"WORKER_INGRESS_SECRET"}  # (the ingress's, shared)
    assert {k for k in env if k.startswith("WORKER_")} <= known
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = from_args(parser.parse_args([]), env | {"WORKER_LEDGER": env.get(
        "WORKER_LEDGER", "postgresql://from-the-existing-secret/aw")})
    assert settings.metrics_address == "0.0.0.0:9400"


def test_statefulset_static_membership_grace_and_security() -> None:
    docs = resources("ledger.url=postgresql://db/aw", "shutdownTimeout=40", "graceMargin=10")
    sts = docs["StatefulSet"]["spec"]
    pod = sts["template"]["spec"]
    (worker,) = pod["containers"]
    env = {e["name"]: e for e in worker["env"]}
    assert env["WORKER_GROUP_INSTANCE_ID"]["value"] == "$(POD_NAME)"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert sts["podManagementPolicy"] == "Parallel"
    assert pod["terminationGracePeriodSeconds"] == 50
    assert docs["ConfigMap"]["data"]["WORKER_SHUTDOWN_TIMEOUT"] == "40"
    assert worker["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {p: worker[p]["httpGet"]["path"] for p in
            ("livenessProbe", "readinessProbe", "startupProbe")} == {
        "livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/readyz"}
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_exactly_once_renders_the_guarantee_with_the_pod_name_as_instance_id() -> None:
    docs = resources("ledger.url=postgresql://db/aw", "kafka.processingGuarantee=exactly-once")
    assert docs["ConfigMap"]["data"]["WORKER_PROCESSING_GUARANTEE"] == "exactly-once"
    (worker,) = docs["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in worker["env"]}
    assert env["WORKER_GROUP_INSTANCE_ID"]["value"] == "$(POD_NAME)"  # its transactional.id
    default = resources("ledger.url=postgresql://db/aw")
    assert default["ConfigMap"]["data"]["WORKER_PROCESSING_GUARANTEE"] == "at-least-once"


def test_port_per_pod_numbers_the_ports_by_pod_index_and_probes_inside() -> None:
    """metrics.portPerPod (several pods on one node's network, as deploy/k8s/e2e runs them): no
    fixed port to clash on, the address from the StatefulSet's pod-index label, exec probes on
    that port, and extra env/volumes for a processor module. deploy/k8s/e2e runs it for real."""
    docs = resources("ledger.url=postgresql://db/aw", "hostNetwork=true", "metrics.portPerPod=true",
                     "metrics.port=49400", "extraEnv[0].name=PYTHONPATH",
                     "extraEnv[0].value=/plugins", "extraVolumes[0].name=plugins",
                     "extraVolumes[0].configMap.name=procs", "extraVolumeMounts[0].name=plugins",
                     "extraVolumeMounts[0].mountPath=/plugins")
    pod = docs["StatefulSet"]["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    env = {e["name"]: e for e in worker["env"]}
    assert pod["hostNetwork"] is True and "ports" not in worker
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']")
    assert env["AW_METRICS_BASE_PORT"]["value"] == "49400"
    assert env["PYTHONPATH"]["value"] == "/plugins"
    assert "WORKER_METRICS_ADDRESS" not in docs["ConfigMap"]["data"]
    assert worker["command"][:2] == ["/usr/bin/tini", "--"] and worker["args"] == ["run"]
    assert '127.0.0.1:$((AW_METRICS_BASE_PORT + POD_INDEX))' in worker["command"][4]
    probes = {p: worker[p]["exec"]["command"] for p in
              ("livenessProbe", "readinessProbe", "startupProbe")}
    assert all(c[:2] == ["python3", "-c"] for c in probes.values())
    assert "/healthz" in probes["livenessProbe"][2] and "/readyz" in probes["readinessProbe"][2]
    assert {"name": "plugins", "mountPath": "/plugins"} in worker["volumeMounts"]
    assert {"name": "plugins", "configMap": {"name": "procs"}} in pod["volumes"]
    assert "ports" not in docs["Service"]["spec"]


def test_deployment_is_dynamic_membership_without_surge() -> None:
    docs = resources("ledger.url=postgresql://db/aw", "kind=Deployment")
    spec = docs["Deployment"]["spec"]
    names = {e["name"] for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert "WORKER_GROUP_INSTANCE_ID" not in names
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_keda_emits_only_known_metadata_keys() -> None:
    docs = resources(files=(CHART / "ci" / "keda-values.yaml",))
    scaled = docs["ScaledObject"]["spec"]
    assert "replicas" not in docs["StatefulSet"]["spec"]  # KEDA owns the count
    assert scaled["maxReplicaCount"] == 8
    assert [t["metadata"]["topic"] for t in scaled["triggers"]] == [
        "customer-activity", "customer-activity-eu"]
    for trigger in scaled["triggers"]:
        assert set(trigger["metadata"]) <= KEDA_KEYS
        assert trigger["metadata"]["lagThreshold"] == "500"
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
    down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert docs["TriggerAuthentication"]["spec"]["secretTargetRef"][0]["name"] == \
        "kafka-scaler-auth"


@pytest.mark.parametrize(("copy", "source"), [
    ("files/alerts.yml", "deploy/prometheus/alerts.yml"),
    ("files/dashboard.json", "deploy/grafana/dashboards/activity-worker.json"),
])
def test_the_chart_carries_the_current_alerts_and_dashboard(copy: str, source: str) -> None:
    # Helm reads only files inside the chart: these are copies, kept identical here.
    assert (CHART / copy).read_bytes() == (REPO / source).read_bytes(), (
        f"cp {source} deploy/helm/activity-worker/{copy}")


def test_the_dashboard_configmap_is_the_dashboard_for_the_sidecar() -> None:
    docs = resources("ledger.url=postgresql://db/aw", "grafanaDashboard.enabled=true")
    dashboard = docs["ConfigMap/dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["activity-worker.json"].strip() == (
        REPO / "deploy/grafana/dashboards/activity-worker.json").read_text().strip()


def test_the_webhook_ingress_is_its_own_deployment_that_no_worker_selector_matches() -> None:
    docs = resources("ledger.url=postgresql://db/aw", "webhooks.enabled=true",
                     "secret.data.WORKER_INGRESS_SECRET=s3cret")
    dep = docs["Deployment/webhooks"]["spec"]
    pod = dep["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["ingress"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WORKER_INGRESS_LISTEN"] == "0.0.0.0:9500"
    assert env["WORKER_TOPIC"] == "customer-activity"
    assert {"secretRef": {"name": "aw-activity-worker"}} in container["envFrom"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert dep["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    ingress_labels = dep["selector"]["matchLabels"]
    pod_labels = dep["template"]["metadata"]["labels"]
    for worker_selector in (docs["StatefulSet"]["spec"]["selector"]["matchLabels"],
                            docs["Service"]["spec"]["selector"],
                            docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):
        assert not worker_selector.items() <= pod_labels.items()  # never the ingress's pods
    assert docs["Service/webhooks"]["spec"]["selector"] == ingress_labels
    assert docs["PodDisruptionBudget/webhooks"]["spec"]["minAvailable"] == 1
    hpa = docs["HorizontalPodAutoscaler/webhooks"]["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["scaleTargetRef"]["name"].endswith("-webhooks")


def test_the_webhook_ingress_needs_its_secret_and_two_replicas() -> None:
    out = render("ledger.url=postgresql://db/aw", "webhooks.enabled=true")
    assert out.returncode != 0 and "WORKER_INGRESS_SECRET" in out.stderr
    out = render("ledger.url=postgresql://db/aw", "webhooks.enabled=true",
                 "secret.data.WORKER_INGRESS_SECRET=s", "webhooks.replicaCount=1")
    assert out.returncode != 0 and "at least 2" in out.stderr
