"""The paths every server answers — /metrics, /healthz, /readyz — then the extra routes (e.g.
the console), in that order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.exposition import choose_encoder

from worker.observability.http.messages import PLAIN, BodyRoute, Request, Response, Route

PROBE_PATHS = ("/metrics", "/healthz", "/readyz")


class Scraped(Protocol):
    """What /metrics renders."""

    @property
    def registry(self) -> Any: ...


class Probes(Protocol):
    """What /healthz and /readyz ask."""

    def liveness(self) -> tuple[bool, list[str]]: ...
    def readiness(self) -> tuple[bool, list[str]]: ...
    def details(self) -> dict[str, int]: ...


@dataclass(slots=True)
class Endpoints:
    """What the server answers, by path; a body route's requests never get here."""

    metrics: Scraped
    health: Probes
    routes: list[Route] = field(default_factory=list)
    body_routes: dict[str, BodyRoute] = field(default_factory=dict)

    def respond(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return Response(405, PLAIN, b"only GET and HEAD are served here\n",
                            (("Allow", "GET, HEAD"),))
        if req.path == "/metrics":
            # Content negotiation: Prometheus text format, or OpenMetrics when asked for.
            encoder, ctype = choose_encoder(req.headers.get("accept", ""))
            return Response(200, ctype, encoder(self.metrics.registry))
        if req.path in ("/healthz", "/readyz"):
            check = self.health.liveness if req.path == "/healthz" else self.health.readiness
            ok, reasons = check()
            doc: dict[str, Any] = {"status": "ok" if ok else "fail", "reasons": reasons}
            if req.path == "/readyz":
                doc.update(self.health.details())
            return Response(200 if ok else 503, "application/json", json.dumps(doc).encode())
        for route in self.routes:
            response = route(req)
            if response is not None:
                return response
        return Response(404, PLAIN, b"not found: try /metrics, /healthz or /readyz\n")
