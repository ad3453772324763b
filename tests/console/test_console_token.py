"""The console's token rule on real workers: on a non-loopback bind address (0.0.0.0; the test
still talks to 127.0.0.1 only) the page and /status.json are refused without a token and served
with it (Bearer header, or `/?token=` traded for a cookie); /metrics, /healthz and /readyz never
ask for it; the token shows up in no response and no log line; `--console off` removes it."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.console.conftest import StartWorker, get

pytestmark = pytest.mark.kafka

TOKEN = "s3cret-console-token"


def _raw(port: int, path: str, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _probes_open(base: str) -> None:
    assert get(f"{base}/metrics")[0] == 200
    assert get(f"{base}/healthz")[0] == 200
    assert get(f"{base}/readyz")[0] in (200, 503)  # a verdict, never a refusal


def test_without_a_token_the_console_is_refused_off_loopback(
        start_worker: StartWorker) -> None:
    worker = start_worker(bind="0.0.0.0")
    for path in ("/", "/status.json", "/console.js"):
        status, body = get(f"{worker.base}{path}")
        assert status == 403 and b"--console-token" in body, (path, status, body)
    _probes_open(worker.base)
    assert "the console is refused on this non-loopback address" in worker.log.read_text()


def test_with_the_token_it_loads_and_the_probes_stay_open(start_worker: StartWorker) -> None:
    worker = start_worker(bind="0.0.0.0", env={"WORKER_CONSOLE_TOKEN": TOKEN})
    port = worker.port
    assert _raw(port, "/")[0] == 401
    assert _raw(port, "/status.json", {"Authorization": "Bearer wrong"})[0] == 401
    assert _raw(port, "/?token=wrong")[0] == 401
    _probes_open(worker.base)

    status, _, body = _raw(port, "/status.json", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body)["worker"]["group"] == worker.group
    status, headers, _ = _raw(port, f"/?token={TOKEN}")
    assert status == 302 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    status, headers, page = _raw(port, "/", {"Cookie": cookie})
    assert status == 200 and b"<table" in page
    assert "script-src 'self'" in headers["content-security-policy"]
    assert _raw(port, "/console.js", {"Cookie": cookie})[0] == 200
    for _, _, body in (_raw(port, "/", {"Cookie": cookie}),
                       _raw(port, "/status.json", {"Cookie": cookie}),
                       _raw(port, "/metrics")):
        assert TOKEN.encode() not in body
    assert TOKEN not in worker.log.read_text()


def test_console_off_leaves_only_the_probes(start_worker: StartWorker) -> None:
    worker = start_worker(None, None, "--console", "off")
    assert get(f"{worker.base}/")[0] == 404
    assert get(f"{worker.base}/status.json")[0] == 404
    _probes_open(worker.base)
