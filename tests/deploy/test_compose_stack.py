"""The compose demo says only true things (it cannot be run here: its Kafka, PostgreSQL,
Prometheus and Grafana images come from Docker Hub). deploy/validate checks it against the
compose-spec schema; this checks what a schema cannot: references resolve, every mounted file
exists, the workers' settings are settings the worker knows, and each worker is its own static
member with a grace period above its shutdown bound."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from worker.settings import OPTIONS, add_arguments, from_args

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
WORKERS = {name: s for name, s in SERVICES.items() if s.get("command") == ["run"]}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)s", text)
    assert match, text
    return float(match.group(1))


def test_references_resolve_and_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for dep in service.get("depends_on", []):
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: volume {source} not declared"


def test_three_static_members_with_settings_the_worker_accepts() -> None:
    assert len(WORKERS) == 3
    ids = {s["environment"]["WORKER_GROUP_INSTANCE_ID"] for s in WORKERS.values()}
    assert len(ids) == 3, "two workers with one instance id would fence each other"
    known = {opt.env for opt in OPTIONS}
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for service in WORKERS.values():
        env = service["environment"]
        assert {k for k in env if k.startswith("WORKER_")} <= known
        settings = from_args(parser.parse_args([]), env)
        assert settings.ledger.startswith("postgresql://")  # shared by the three
        assert _seconds(service["stop_grace_period"]) > settings.shutdown_timeout
        assert service["read_only"] is True


def test_prometheus_scrapes_every_worker() -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    job, ingress = config["scrape_configs"]
    assert job["job_name"] == "activity-worker"  # what the alerts and the dashboard select
    targets = {t for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:9400" for name in WORKERS}
    assert [t for c in ingress["static_configs"] for t in c["targets"]] == ["ingress:9500"]
