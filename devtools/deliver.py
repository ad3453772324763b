"""Deliver records to the webhook ingress as Voucherify does: each body POSTed with
`x-voucherify-signature` (the hex HMAC-SHA256 of the body with the secret), over kept-alive
connections, a 503 retried after a pause (Voucherify retries for 24 h). For `activity-worker
generate --ingress URL` and ./scripts/run-demo."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import queue
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable

RETRY_PAUSE_S = 1.0
MAX_TRIES = 30


class Deliverer:
    def __init__(self, url: str, secret: bytes, timeout: float = 15.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--ingress {url!r}: give the ingress's http:// URL, e.g. "
                             "http://127.0.0.1:9500/webhooks/voucherify")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.secret, self.timeout = secret, timeout
        self.statuses: Counter[int] = Counter()
        self._local = threading.local()
        self._lock = threading.Lock()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port,
                                                                 timeout=self.timeout)
        return conn

    def deliver(self, body: bytes) -> int:
        """POST until a final answer (not 503, not a broken connection); returns its status."""
        signature = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        for _ in range(MAX_TRIES):
            try:
                conn = self._conn()
                conn.request("POST", self.path, body=body, headers={
                    "Content-Type": "application/json", "x-voucherify-signature": signature})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                self._local.conn = None
                status = 0
            if status not in (0, 503):
                break
            time.sleep(RETRY_PAUSE_S)
        with self._lock:
            self.statuses[status] += 1
        return status

    def deliver_all(self, bodies: Iterable[bytes], concurrency: int = 8) -> Counter[int]:
        """Deliver every body, `concurrency` at a time; `bodies` is read only as fast as they
        go out (a paced generator is not read ahead)."""
        todo: queue.Queue[bytes | None] = queue.Queue(maxsize=concurrency * 2)

        def work() -> None:
            while (body := todo.get()) is not None:
                self.deliver(body)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for body in bodies:
            todo.put(body)
        for _ in threads:
            todo.put(None)
        for t in threads:
            t.join()
        return self.statuses
