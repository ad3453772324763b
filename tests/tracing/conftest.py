"""A real Jaeger (deploy/local/jaeger: the all-in-one binary built from the Go module proxy,
in-memory storage, OTLP/HTTP in, the query API out) on free loopback ports, per module."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kafka_helpers import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "local" / "jaeger"


@dataclass(frozen=True)
class Jaeger:
    otlp: str   # OTEL_EXPORTER_OTLP_ENDPOINT
    query: str  # the query API

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as Jaeger's query API gives it (`spans`, `processes`), None if unknown."""
        try:
            with urllib.request.urlopen(f"{self.query}/api/traces/{trace_id}", timeout=5) as r:
                data = json.load(r).get("data") or []
        except OSError:
            return None
        return data[0] if data else None

    def search(self, service: str, operation: str | None = None) -> list[dict[str, Any]]:
        """The traces with spans of `service` (and `operation`), newest first."""
        query = {"service": service, "limit": "50", "lookback": "1h"}
        if operation:
            query["operation"] = operation
        url = f"{self.query}/api/traces?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return list(json.load(r).get("data") or [])
        except OSError:
            return []


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    env = dict(os.environ, JAEGER_OTLP_PORT=str(free_port()),
               JAEGER_QUERY_PORT=str(free_port()), JAEGER_GRPC_PORT=str(free_port()),
               ACTIVITY_WORKER_LOCAL_DIR=str(tmp_path_factory.mktemp("jaeger")))
    # the first build takes minutes (cached afterwards in ~/.cache/activity-worker)
    subprocess.run([str(SCRIPT), "build"], env=env, check=True, timeout=3000)
    up = subprocess.run([str(SCRIPT), "up"], env=env, check=True, timeout=120,
                        capture_output=True, text=True)
    otlp, query = up.stdout.split()[-2:]
    try:
        yield Jaeger(otlp, query)
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, check=False, timeout=60)
