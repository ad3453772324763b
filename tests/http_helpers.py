"""GET a worker's JSON endpoint (/healthz, /readyz) the way a kubelet probe would; a real HTTP
server on loopback for processors to call (`LoopbackServer`)."""

from __future__ import annotations

import asyncio
import json
import threading
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
