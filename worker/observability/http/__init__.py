"""The worker's HTTP endpoints: `/metrics` (Prometheus text format), `/healthz`, `/readyz`, and
the ops console (`/`, `/status.json`, worker.observability.console) when it is on.

`serve_http("127.0.0.1:9400", metrics, health)` starts the server on a daemon thread and returns
at once. The default bind address is loopback on purpose: metrics and health are not meant for
the outside world, and a worker started by hand should not open a port on every interface. In a
container, bind `0.0.0.0:9400` so Prometheus and the kubelet can reach it. Port 0 picks a free
port (read it back from `.port`).

The server cannot be held open (`HttpLimits`): one asyncio event loop on one thread holds every
connection, so a connection costs a socket, never a thread; the whole request head must arrive
within `request_timeout` (a client dripping a byte at a time is cut off too), a kept-alive
connection is closed after `idle_timeout` without a new request, a response must be taken within
`write_timeout`; request heads are capped at `max_request_bytes` and bodies are refused, except
on the paths of `BodyRoute`s (the webhook ingress: POST with a Content-Length up to the route's
limit, read within `request_timeout`, answered by a coroutine on the loop). At most
`max_connections` are open at once; when a new one arrives at the cap, the oldest connection
still waiting for its request is dropped to make room, so probes get in while a flood of
half-sent requests is open. Responses are rendered on the loop thread: each is a read of
in-memory state (the group view the console shows is fetched by its own thread).
"""

from worker.observability.http.addresses import DEFAULT_ADDRESS, is_loopback, parse_address
from worker.observability.http.endpoints import Probes, Scraped
from worker.observability.http.messages import BodyRoute, Request, Response, Route
from worker.observability.http.server import HttpLimits, HttpServer, serve_http

__all__ = ["DEFAULT_ADDRESS", "BodyRoute", "HttpLimits", "HttpServer", "Probes", "Request",
           "Response", "Route", "Scraped", "is_loopback", "parse_address", "serve_http"]
