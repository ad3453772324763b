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

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from prometheus_client.exposition import choose_encoder

from worker.errors import ConfigError

__all__ = ["DEFAULT_ADDRESS", "BodyRoute", "HttpLimits", "HttpServer", "Probes", "Request",
           "Response", "Route", "Scraped", "is_loopback", "parse_address", "serve_http"]

DEFAULT_ADDRESS = "127.0.0.1:9400"
PROBE_PATHS = ("/metrics", "/healthz", "/readyz")


def is_loopback(host: str) -> bool:
    """True for a loopback address or `localhost` (a name may resolve to anything)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port)."""
    host, sep, port_s = address.rpartition(":")
    if not sep or not host or not port_s.isdigit() or int(port_s) > 65535:
        raise ConfigError(f"invalid HTTP address {address!r}: give it as host:port, "
                          f"e.g. {DEFAULT_ADDRESS} or 0.0.0.0:9400 in a container")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_s)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one client can take from the server (see the module docstring)."""

    max_connections: int = 512
    request_timeout: float = 10.0
    idle_timeout: float = 10.0
    write_timeout: float = 10.0
    max_request_bytes: int = 8 * 1024
    # Connections the kernel holds for the loop to accept. Past it, a new connection looks open
    # to its client but is accepted only after TCP retransmits (seconds later).
    listen_backlog: int = 1024


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


#: A handler for paths beyond the probes: a Response, or None when the path is not its own.
Route = Callable[[Request], Response | None]


@dataclass(frozen=True, slots=True)
class BodyRoute:
    """A path that takes POSTed bodies of up to `max_body` bytes (Content-Length only),
    answered by `handle` on the server's loop."""

    path: str
    max_body: int
    handle: Callable[[Request], Awaitable[Response]]
    #: told the status of each request the server refused without calling `handle` (a wrong
    #: method, no or a bad Content-Length, too large; a body POSTed to another path: 404)
    refused: Callable[[int], None] = lambda status: None


class Scraped(Protocol):
    """What /metrics renders."""

    @property
    def registry(self) -> Any: ...


class Probes(Protocol):
    """What /healthz and /readyz ask."""

    def liveness(self) -> tuple[bool, list[str]]: ...
    def readiness(self) -> tuple[bool, list[str]]: ...
    def details(self) -> dict[str, int]: ...

_REASONS = {200: "OK", 202: "Accepted", 302: "Found", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Content Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}
_PLAIN = "text/plain; charset=utf-8"


def _parse_head(head: bytes) -> Request | None:
    """The request line and headers, or None when they are not HTTP/1.x."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return None
        headers[name.strip().lower()] = value.strip()
    path, _, query = target.partition("?")
    if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers.setdefault("connection", "close")
    return Request(method, path, query, headers)


@dataclass(slots=True, eq=False)
class _Connection:
    transport: asyncio.WriteTransport
    waiting: bool = True  # reading a request head (what eviction may drop)


@dataclass(slots=True)
class _Endpoints:
    metrics: Scraped
    health: Probes
    routes: list[Route] = field(default_factory=list)
    body_routes: dict[str, BodyRoute] = field(default_factory=dict)

    def respond(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return Response(405, _PLAIN, b"only GET and HEAD are served here\n",
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
        return Response(404, _PLAIN, b"not found: try /metrics, /healthz or /readyz\n")


class HttpServer:
    """A running endpoint server; `close()` stops it and frees the port."""

    def __init__(self, sock: socket.socket, endpoints: _Endpoints, limits: HttpLimits) -> None:
        self._sock = sock
        self._endpoints = endpoints
        self.limits = limits
        self.host: str = str(sock.getsockname()[0])
        self.port: int = int(sock.getsockname()[1])
        self._connections: dict[_Connection, None] = {}  # insertion order: oldest first
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="obs-http", daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # -- the loop thread -----------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(
            self._serve, sock=self._sock, limit=self.limits.max_request_bytes,
            backlog=self.limits.listen_backlog))  # asyncio listens again: its default is 100
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            # Connections still being served when the server stopped: let them see the
            # cancellation, so that no task is left pending when the loop closes.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def _admit(self, conn: _Connection) -> bool:
        """Register `conn`; at the cap, drop the oldest connection still waiting for its
        request (or refuse `conn` when every open one is busy answering)."""
        if len(self._connections) >= self.limits.max_connections:
            victim = next((c for c in self._connections if c.waiting), None)
            if victim is None:
                return False
            del self._connections[victim]
            victim.transport.abort()
        self._connections[conn] = None
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(writer.transport)
        if not self._admit(conn):
            writer.transport.abort()
            return
        # Small answers go out at once. asyncio turns Nagle off only on sockets whose protocol
        # number is IPPROTO_TCP, and those accepted from socket.create_server have 0: without
        # this, a kept-alive client's next request waited for its own delayed ACK (~40 ms).
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        limits = self.limits
        timeout = limits.request_timeout
        try:
            while True:
                conn.waiting = True
                try:
                    async with asyncio.timeout(timeout):
                        head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    await self._write(writer, Response(431, _PLAIN, b"request head too large\n"),
                                      head_only=False, keep_alive=False)
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                conn.waiting = False
                req = _parse_head(head)
                if req is None:
                    await self._write(writer, Response(400, _PLAIN, b"bad request\n"),
                                      head_only=False, keep_alive=False)
                    return
                body_route = self._endpoints.body_routes.get(req.path)
                if body_route is not None:
                    conn.waiting = True  # (a client dripping its body may be evicted too)
                    response = await self._body_response(reader, req, body_route)
                    conn.waiting = False
                    if response is None:
                        return
                    keep_alive = (response.status < 400 and
                                  req.headers.get("connection", "").lower() != "close")
                    if not await self._write(writer, response, head_only=False,
                                             keep_alive=keep_alive) or not keep_alive:
                        return
                    timeout = limits.idle_timeout
                    continue
                if req.headers.get("content-length", "0") != "0" or \
                        "transfer-encoding" in req.headers:
                    body_paths = self._endpoints.body_routes
                    refusal = (Response(404, _PLAIN, ("not found: POST deliveries to "
                                                      f"{', '.join(body_paths)}\n").encode())
                               if body_paths and req.path not in PROBE_PATHS else
                               Response(413, _PLAIN, b"request bodies are not accepted\n"))
                    for route in body_paths.values():
                        route.refused(refusal.status)
                    await self._write(writer, refusal, head_only=False, keep_alive=False)
                    return
                try:
                    response = self._endpoints.respond(req)
                except Exception as exc:  # a bug in a page must not take the probes down
                    response = Response(500, _PLAIN, f"internal error: {exc!r}\n".encode())
                keep_alive = req.headers.get("connection", "").lower() != "close"
                if not await self._write(writer, response, head_only=req.method == "HEAD",
                                         keep_alive=keep_alive) or not keep_alive:
                    return
                timeout = limits.idle_timeout
        finally:
            self._connections.pop(conn, None)
            writer.close()

    async def _body_response(self, reader: asyncio.StreamReader, req: Request,
                             route: BodyRoute) -> Response | None:
        """Read the body of a request to a body route and answer it; None when the client
        went away or was too slow. Refusals close the connection (the body is not read)."""
        response = await self._read_and_handle(reader, req, route)
        if response is not None and response.status in (400, 405, 411, 413):
            route.refused(response.status)
        return response

    async def _read_and_handle(self, reader: asyncio.StreamReader, req: Request,
                               route: BodyRoute) -> Response | None:
        if req.method != "POST":
            return Response(405, _PLAIN, b"only POST is served here\n", (("Allow", "POST"),))
        if "transfer-encoding" in req.headers:
            return Response(411, _PLAIN, b"send the body with a Content-Length\n")
        length_s = req.headers.get("content-length", "")
        if not length_s.isdigit():
            return Response(411 if not length_s else 400, _PLAIN,
                            b"a valid Content-Length is required\n")
        length = int(length_s)
        if length > route.max_body:
            return Response(413, _PLAIN, f"the body is over {route.max_body} bytes\n".encode())
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                body = await reader.readexactly(length)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None
        try:
            return await route.handle(replace(req, body=body))
        except Exception as exc:
            return Response(500, _PLAIN, f"internal error: {exc!r}\n".encode())

    async def _write(self, writer: asyncio.StreamWriter, response: Response, *,
                     head_only: bool, keep_alive: bool) -> bool:
        status = response.status
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                 f"Content-Type: {response.content_type}",
                 f"Content-Length: {len(response.body)}",
                 "Cache-Control: no-store",
                 f"Connection: {'keep-alive' if keep_alive else 'close'}",
                 *(f"{name}: {value}" for name, value in response.headers)]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(head if head_only else head + response.body)  # one segment when it fits
        if writer.transport.get_write_buffer_size() == 0:
            return True  # all sent: no wait (and no timer) needed
        try:
            async with asyncio.timeout(self.limits.write_timeout):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            return False
        return True

    # -- the caller's thread -------------------------------------------------------------------
    def close(self) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._connections):
                conn.transport.abort()
            self._connections.clear()
            self._loop.stop()

        if self._loop.is_running():
            self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_http(address: str, metrics: Scraped, health: Probes, *,
               routes: list[Route] | None = None, body_routes: list[BodyRoute] | None = None,
               limits: HttpLimits | None = None, what: str = "metrics and health"
               ) -> HttpServer:
    """Serve /metrics, /healthz and /readyz (and `routes`, e.g. the console, and
    `body_routes`, e.g. the webhook ingress) on `address` from a daemon thread."""
    host, port = parse_address(address)
    limits = limits or HttpLimits()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family,
                                      backlog=limits.listen_backlog)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address} for {what} ({exc.strerror}): "
                          f"choose another address or port, or stop the process using it") from exc
    return HttpServer(sock, _Endpoints(metrics, health, list(routes or []),
                                       {r.path: r for r in body_routes or ()}), limits)
