"""The worker's HTTP endpoints: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.

`serve_http("127.0.0.1:9400", metrics, health)` starts a stdlib `ThreadingHTTPServer` on a daemon
thread and returns at once. The default bind address is loopback on purpose: metrics and health
are not meant for the outside world, and a worker started by hand should not open a port on
every interface. In a container, bind `0.0.0.0:9400` so Prometheus and the kubelet can reach it.
Port 0 picks a free port (read it back from `.port`).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder

from worker.errors import ConfigError
from worker.observability.health import HealthState
from worker.observability.metrics import WorkerMetrics

__all__ = ["DEFAULT_ADDRESS", "HttpServer", "parse_address", "serve_http"]

DEFAULT_ADDRESS = "127.0.0.1:9400"


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port)."""
    host, sep, port_s = address.rpartition(":")
    if not sep or not host or not port_s.isdigit() or int(port_s) > 65535:
        raise ConfigError(f"invalid HTTP address {address!r}: give it as host:port, "
                          f"e.g. {DEFAULT_ADDRESS} or 0.0.0.0:9400 in a container")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_s)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], metrics: WorkerMetrics,
                 health: HealthState) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.metrics = metrics
        self.health = health
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _respond(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            # Content negotiation: Prometheus text format, or OpenMetrics when asked for.
            encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, ctype, encoder(self.server.metrics.registry), head)
        elif path in ("/healthz", "/readyz"):
            check = (self.server.health.liveness if path == "/healthz"
                     else self.server.health.readiness)
            ok, reasons = check()
            doc: dict[str, Any] = {"status": "ok" if ok else "fail", "reasons": reasons}
            if path == "/readyz":
                doc.update(self.server.health.details())
            body = json.dumps(doc).encode()
            self._send(200 if ok else 503, "application/json", body, head)
        else:
            self._send(404, "text/plain; charset=utf-8",
                       b"not found: try /metrics, /healthz or /readyz\n", head)

    def _send(self, code: int, ctype: str, body: bytes, head: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one log line per scrape would be noise; errors surface through the worker


class HttpServer:
    """A running endpoint server; `close()` stops it and frees the port."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.host: str = str(server.server_address[0])
        self.port: int = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="obs-http",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_http(address: str, metrics: WorkerMetrics, health: HealthState) -> HttpServer:
    """Serve /metrics, /healthz and /readyz on `address` from a daemon thread."""
    host, port = parse_address(address)
    try:
        server = _Server((host, port), metrics, health)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address} for metrics and health ({exc.strerror}): "
                          f"choose another address or port, or stop the process using it") from exc
    return HttpServer(server)
