"""The bounded asyncio server behind `serve_http` (limits: see the package docstring): one
event loop on one daemon thread holds every connection."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, replace

from worker.errors import ConfigError
from worker.observability.http.addresses import parse_address
from worker.observability.http.endpoints import PROBE_PATHS, Endpoints, Probes, Scraped
from worker.observability.http.messages import (
    PLAIN,
    REASONS,
    BodyRoute,
    Request,
    Response,
    Route,
    parse_head,
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one client can take from the server (see worker.observability.http's docstring)."""

    max_connections: int = 512
    request_timeout: float = 10.0
    idle_timeout: float = 10.0
    write_timeout: float = 10.0
    max_request_bytes: int = 8 * 1024
    # Connections the kernel holds for the loop to accept. Past it, a new connection looks open
    # to its client but is accepted only after TCP retransmits (seconds later).
    listen_backlog: int = 1024


@dataclass(slots=True, eq=False)
class _Connection:
    transport: asyncio.WriteTransport
    waiting: bool = True  # reading a request head (what eviction may drop)


class HttpServer:
    """A running endpoint server; `close()` stops it and frees the port."""

    def __init__(self, sock: socket.socket, endpoints: Endpoints, limits: HttpLimits) -> None:
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
                    await self._write(writer, Response(431, PLAIN, b"request head too large\n"),
                                      head_only=False, keep_alive=False)
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                conn.waiting = False
                req = parse_head(head)
                if req is None:
                    await self._write(writer, Response(400, PLAIN, b"bad request\n"),
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
                    refusal = (Response(404, PLAIN, ("not found: POST deliveries to "
                                                      f"{', '.join(body_paths)}\n").encode())
                               if body_paths and req.path not in PROBE_PATHS else
                               Response(413, PLAIN, b"request bodies are not accepted\n"))
                    for route in body_paths.values():
                        route.refused(refusal.status)
                    await self._write(writer, refusal, head_only=False, keep_alive=False)
                    return
                try:
                    response = self._endpoints.respond(req)
                except Exception as exc:  # a bug in a page must not take the probes down
                    response = Response(500, PLAIN, f"internal error: {exc!r}\n".encode())
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
            return Response(405, PLAIN, b"only POST is served here\n", (("Allow", "POST"),))
        if "transfer-encoding" in req.headers:
            return Response(411, PLAIN, b"send the body with a Content-Length\n")
        length_s = req.headers.get("content-length", "")
        if not length_s.isdigit():
            return Response(411 if not length_s else 400, PLAIN,
                            b"a valid Content-Length is required\n")
        length = int(length_s)
        if length > route.max_body:
            return Response(413, PLAIN, f"the body is over {route.max_body} bytes\n".encode())
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                body = await reader.readexactly(length)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None
        try:
            return await route.handle(replace(req, body=body))
        except Exception as exc:
            return Response(500, PLAIN, f"internal error: {exc!r}\n".encode())

    async def _write(self, writer: asyncio.StreamWriter, response: Response, *,
                     head_only: bool, keep_alive: bool) -> bool:
        status = response.status
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
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
    return HttpServer(sock, Endpoints(metrics, health, list(routes or []),
                                       {r.path: r for r in body_routes or ()}), limits)
