"""GET a worker's JSON endpoint (/healthz, /readyz) the way a kubelet probe would; a real HTTP
server on loopback for processors to call (`LoopbackServer`), and one whose paths answer by a
mode (`Endpoints`: up, down, bad10)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

from aiohttp import web


def get_json(url: str, timeout: float = 3.0) -> tuple[int, dict[str, object]] | None:
    """(status, body) of a JSON endpoint, error statuses included; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return None


class LoopbackServer:
    """A real aiohttp server on a free 127.0.0.1 port, on an event loop in a thread of its own:
    every `POST /{name}` goes to `answer` (override it). `url(name)`, `close()`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def answer(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/{name}", self.answer)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        self.loop.run_forever()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


class Endpoints(LoopbackServer):
    """A real HTTP server on a free loopback port. Each path answers by its mode: "up" (200),
    "down" (503), "bad10" (400 for events whose number ends in 0, else 200). Every request is
    recorded as (path, Idempotency-Key, status, monotonic time)."""

    def __init__(self) -> None:
        self.modes: dict[str, str] = {}
        self.requests: list[tuple[str, str, int, float]] = []
        self.lock = threading.Lock()
        super().__init__()

    async def answer(self, request: web.Request) -> web.Response:
        path = request.match_info["name"]
        body = await request.read()
        key = request.headers.get("Idempotency-Key", "")
        mode = self.modes.get(path, "up")
        status = 200
        if mode == "down":
            status = 503
        elif mode == "bad10" and json.loads(body)["id"].endswith("0"):
            status = 400
        with self.lock:
            self.requests.append((path, key, status, time.monotonic()))
        return web.Response(status=status, text="" if status == 200 else f"status {status}")

    def answered(self, path: str, status: int) -> list[str]:
        with self.lock:
            return [k for p, k, s, _ in self.requests if p == path and s == status]

    def calls_between(self, path: str, t0: float, t1: float, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for p, _, s, t in self.requests
                       if p == path and t0 <= t <= t1 and status in (None, s))
