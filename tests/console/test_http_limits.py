"""The metrics/health/console server cannot be held open: a real worker with 2,000 connections
that sent half a request still answers /healthz within a second, its thread count does not
grow, and the half-open connections are closed after the request timeout. The other limits
(head size, bodies, junk, keep-alive idle timeout) on an in-process server with short ones."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.console.conftest import RunningWorker, StartWorker, get
from worker.observability.health import HealthState
from worker.observability.http import HttpLimits, HttpServer, Request, Response, serve_http
from worker.observability.metrics import WorkerMetrics

HALF_OPEN = 2000
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: never ends


# Connections are opened in rounds well under the server's listen backlog, and each
# round waits until the server has accepted it. A flood past the backlog overflows the kernel's
# accept queue: the client sees its connection open, but the server only accepts it after TCP
# retransmits, seconds later, so its request timeout starts late and the "lived" figures would
# measure the kernel's retransmission back-off, not the server (a CI run saw 15.4 s for 10 s).
ROUND = HttpLimits().listen_backlog // 4


def _open_half_requests(port: int, n: int,
                        opened: list[float] | None = None) -> list[socket.socket]:
    """`n` connections that each sent half a request; `opened` gets the time of each. After each
    round a /healthz request is answered, which the server accepts only after every connection
    queued before it (the accept queue is first in, first out)."""
    socks: list[socket.socket] = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(HALF_REQUEST)
        s.setblocking(False)
        socks.append(s)
        if opened is not None:
            opened.append(time.monotonic())
        if (i + 1) % ROUND == 0 and i + 1 < n:
            assert get(f"http://127.0.0.1:{port}/healthz", timeout=5.0)[0] == 200
    return socks


def _read_response(s: socket.socket) -> bytes:
    """One HTTP response (head and Content-Length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def _closed_times(socks: list[socket.socket], deadline: float) -> dict[int, float]:
    """Wait until the server closed every socket (EOF or reset) or the deadline passed; returns
    the monotonic time each one was seen closed, by index."""
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    closed: dict[int, float] = {}
    while len(closed) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            i = key.data
            try:
                data = socks[i].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed[i] = time.monotonic()
                sel.unregister(socks[i])
    sel.close()
    return closed


def _settled_threads(worker: RunningWorker) -> int:
    """The worker's thread count once it is ready (consumer, DLQ producer and ledger started:
    /healthz answers before they are) and the count held still for a second."""
    deadline = time.monotonic() + 60
    while get(f"{worker.base}/readyz", timeout=2)[0] != 200:
        assert time.monotonic() < deadline, "the worker never became ready"
        time.sleep(0.2)
    last, since = worker.threads(), time.monotonic()
    while time.monotonic() - since < 1.0:
        assert time.monotonic() < deadline, "the worker's thread count never settled"
        time.sleep(0.1)
        now = worker.threads()
        if now != last:
            last, since = now, time.monotonic()
    return last


@pytest.mark.kafka
def test_half_open_connections_cannot_hold_the_worker(start_worker: StartWorker) -> None:
    worker = start_worker()
    threads_before = _settled_threads(worker)
    timeout = HttpLimits().request_timeout
    opened: list[float] = []
    socks = _open_half_requests(worker.port, HALF_OPEN, opened)
    try:
        t0 = time.monotonic()
        status, body = get(f"{worker.base}/healthz", timeout=1.0)
        took = time.monotonic() - t0
        assert status == 200 and b'"ok"' in body
        assert took < 1.0, f"/healthz took {took:.2f}s with {HALF_OPEN} half-open connections"
        assert get(f"{worker.base}/metrics", timeout=1.0)[0] == 200
        threads_during = worker.threads()
        assert threads_during <= threads_before + 1, (threads_before, threads_during)

        closed = _closed_times(socks, deadline=opened[-1] + timeout + 10)
        assert len(closed) == HALF_OPEN, f"{HALF_OPEN - len(closed)} still open " \
            f"{timeout + 10:.0f}s after the last was opened"
        # Beyond the cap the oldest were dropped at once; the rest lived until the timeout.
        lived = [t - opened[i] for i, t in closed.items()]
        assert max(lived) < timeout + 5
        late = [t for t in lived if t >= timeout - 1]
        assert len(late) >= HttpLimits().max_connections // 2, \
            f"only {len(late)} connections lasted until the {timeout:g}s request timeout"
        assert worker.proc.poll() is None
        assert worker.threads() <= threads_before + 1
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def short() -> Iterator[HttpServer]:
    limits = HttpLimits(max_connections=8, request_timeout=1.0, idle_timeout=0.5,
                        max_request_bytes=1024)
    server = serve_http("127.0.0.1:0", WorkerMetrics(), HealthState(), limits=limits)
    try:
        yield server
    finally:
        server.close()


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_oversized_head_body_and_junk_are_refused(short: HttpServer) -> None:
    big = b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n"
    assert _exchange(short.port, big).startswith(b"HTTP/1.1 431 ")
    body = b"POST /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    assert _exchange(short.port, body).startswith(b"HTTP/1.1 413 ")
    assert _exchange(short.port, b"hello there\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    put = b"PUT /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
    assert _exchange(short.port, put).startswith(b"HTTP/1.1 405 ")


def test_kept_alive_connection_closes_when_idle(short: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", short.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = _read_response(s)
        assert first.startswith(b"HTTP/1.1 200 ") and b"keep-alive" in first
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(s).startswith(b"HTTP/1.1 503 ")  # same connection, second request
        t0 = time.monotonic()
        assert s.recv(1) == b""  # closed by the server after idle_timeout
        assert 0.3 < time.monotonic() - t0 < 3


def test_slow_drip_is_cut_at_the_request_timeout(short: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", short.port), timeout=5) as s:
        t0 = time.monotonic()
        closed = False
        for byte in HALF_REQUEST:  # one byte every 0.1 s: each read is quick, the whole is not
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - t0 > 3:
                break
        if not closed:
            s.settimeout(3)
            try:
                closed = s.recv(1) == b""
            except OSError:
                closed = True
        assert closed and time.monotonic() - t0 < 3


def test_at_the_cap_the_oldest_waiting_connection_makes_room(short: HttpServer) -> None:
    socks = _open_half_requests(short.port, 20)
    try:
        deadline = time.monotonic() + 5
        while short.open_connections > 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert short.open_connections <= 8
        assert get(f"http://127.0.0.1:{short.port}/healthz", timeout=1.0)[0] == 200
        closed = _closed_times(socks[:12], deadline=time.monotonic() + 0.5)
        assert len(closed) >= 12 - 1  # the oldest ones went first
    finally:
        for s in socks:
            s.close()


def test_the_listen_backlog_holds_a_burst_while_the_loop_is_busy() -> None:
    """While the loop is held (a page taking its time), 300 new connections are still taken by
    the kernel at once and answered afterwards. asyncio listens again with a backlog of 100 unless
    told: then the 102nd connect waits for a SYN retransmit (1 s) and times out here."""
    entered, release = threading.Event(), threading.Event()

    def slow_page(req: Request) -> Response | None:
        if req.path != "/slow":
            return None
        entered.set()
        release.wait(10)
        return Response(200, "text/plain", b"slow\n")

    server = serve_http("127.0.0.1:0", WorkerMetrics(), HealthState(), routes=[slow_page])
    socks: list[socket.socket] = []
    try:
        slow = threading.Thread(target=get, args=(f"http://127.0.0.1:{server.port}/slow",))
        slow.start()
        assert entered.wait(5), "the slow page was never asked for"
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=0.9)
            s.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
            socks.append(s)
        release.set()
        slow.join(10)
        for s in socks:
            s.settimeout(5)
            assert _read_response(s).startswith(b"HTTP/1.1 200 ")
    finally:
        release.set()
        for s in socks:
            s.close()
        server.close()
