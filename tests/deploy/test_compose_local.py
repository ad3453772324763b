"""The compose stack brought up for real with Debian's podman and the podman-compose of
requirements.lock (no Docker engine), from images built here from Debian's packages (opt-in:
COMPOSE_E2E=1; the first build takes several minutes). Everything runs on the host's loopback
(deploy/compose/compose.local.yaml).

A signed Voucherify-style delivery is posted to the ingress; its effect appears in PostgreSQL
(the built-in loyalty-tier read model, written by a worker in the ledger's transaction), and
Prometheus scrapes the ingress and both workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.helpers import wait_for
from tests.http_helpers import get_json
from tests.kafka_helpers import can_bind
from worker.ingress.signature import sign

pytestmark = [
    pytest.mark.timeout(2400),
    pytest.mark.skipif(not os.environ.get("COMPOSE_E2E"),
                       reason="opt-in: COMPOSE_E2E=1 builds the images and runs the compose "
                       "stack with podman-compose"),
]

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "compose.local.yaml"
PROJECT = "aw-compose-e2e"
SECRET = "compose-e2e-secret"
PORTS = (39092, 39093, 39532, 39500, 39501, 39502, 39090)
LEDGER = "postgresql://activity_worker:activity_worker@127.0.0.1:39532/activity_worker"


def _compose(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podman_compose", "-p", PROJECT,
                           "-f", str(COMPOSE), *args],
                          env=dict(os.environ, WEBHOOK_SECRET=SECRET), capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def stack() -> Iterator[None]:
    def free() -> bool:  # (a stack just taken down leaves its ports in TIME_WAIT a while)
        return all(can_bind(p) for p in PORTS)

    try:
        wait_for(free, 120, "the stack's ports free", interval=1)
    except AssertionError:
        busy = [p for p in PORTS if not can_bind(p)]
        pytest.fail(f"ports {busy} are in use: the stack listens on {PORTS} (127.0.0.1)")
    built = subprocess.run([str(REPO / "deploy" / "compose" / "images" / "build")],
                           capture_output=True, text=True, timeout=2400, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    up = _compose("up", "-d")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    try:
        yield
    finally:
        logs = _compose("logs", timeout=120)
        print(logs.stdout[-6000:])
        _compose("down", "-v", timeout=300)


def _ready(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=3).status == 200
    except OSError:
        return False


def test_a_signed_delivery_reaches_postgresql_through_the_stack(stack: None) -> None:
    import psycopg

    wait_for(lambda: _ready("http://127.0.0.1:39500/readyz"), 300, "the ingress ready")
    wait_for(lambda: _ready("http://127.0.0.1:39501/readyz")
             and _ready("http://127.0.0.1:39502/readyz"), 300, "both workers ready")
    body = json.dumps({
        "id": "whs_compose_1", "project_id": "proj_1", "type": "customer.loyalty.tier.joined",
        "created_at": "2026-06-01T10:00:00.000Z",
        "data": {"customer": {"id": "cust_compose_1", "object": "customer"},
                 "campaign": {"id": "camp_1", "name": "Loyalty programme"},
                 "loyalty_tier": {"id": "ltr_gold", "name": "Gold",
                                  "points": {"from": 100, "to": 500}}},
        "event": {"id": "evcus_compose_1", "type": "customer.loyalty.tier.joined",
                  "created_at": "2026-06-01T10:00:00Z", "entity_id": "cust_compose_1",
                  "group_id": "v-compose-1"}}).encode()
    req = urllib.request.Request("http://127.0.0.1:39500/webhooks/voucherify", data=body,
                                 headers={"x-voucherify-signature": sign(body, SECRET.encode()),
                                          "Content-Type": "application/json"})
    assert urllib.request.urlopen(req, timeout=15).status == 200

    def effect() -> list[tuple[object, ...]]:
        try:
            with psycopg.connect(LEDGER, connect_timeout=3) as conn:
                return conn.execute("SELECT customer_id FROM rm_loyalty_tier_current "
                                    "WHERE customer_id = 'cust_compose_1'").fetchall()
        except psycopg.Error:
            return []

    wait_for(effect, 180, "the delivery's effect in PostgreSQL", interval=1)

    def scraped() -> set[str]:
        got = get_json("http://127.0.0.1:39090/api/v1/targets")
        if got is None or got[0] != 200:
            return set()
        targets: Any = got[1]["data"]
        return {t["scrapeUrl"] for t in targets["activeTargets"] if t["health"] == "up"}

    wait_for(lambda: len(scraped()) == 3, 120, "Prometheus scraping the ingress and both workers",
             interval=1)

    def stored() -> bool:
        got = get_json("http://127.0.0.1:39090/api/v1/query?query=activity_worker_ingress_"
                       "requests_total%7Boutcome%3D%22stored%22%7D%20%3E%200")
        data: Any = got[1]["data"] if got is not None and got[0] == 200 else {}
        return bool(data.get("result"))

    wait_for(stored, 60, "the stored delivery counted in Prometheus", interval=1)
