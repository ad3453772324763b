"""Who may see the console (`/`, `/status.json` and the page's script and style): the token
rule. `/metrics`, `/healthz` and `/readyz` never pass through here: scrapers and probes need
no token.

- With a token (`--console-token` / `WORKER_CONSOLE_TOKEN`), every console request must carry
  it: `Authorization: Bearer TOKEN`, or the cookie the page sets when opened once as
  `/?token=TOKEN` (the page then redirects to `/`, so the token leaves the address bar).
- Without one, the console is served only when the metrics address is loopback; on any other
  address it is refused with a sentence saying what to set.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, quote, unquote

from worker.observability.http import Request, Response, is_loopback

__all__ = ["COOKIE", "ConsoleAccess", "is_loopback"]

COOKIE = "activity_worker_console"
_PLAIN = "text/plain; charset=utf-8"


class ConsoleAccess:
    def __init__(self, token: str | None, host: str) -> None:
        self._token = token or None
        self.loopback = is_loopback(host)

    @property
    def open(self) -> bool:
        """Whether the console can be reached at all (else every request is refused)."""
        return self._token is not None or self.loopback

    def refusal(self, req: Request) -> Response | None:
        """None when `req` may see the console; else the response that refuses it (or the
        redirect that trades a `?token=` for the cookie)."""
        if self._token is None:
            if self.loopback:
                return None
            return Response(403, _PLAIN, b"the console is off on a non-loopback address "
                            b"without a token: start the worker with --console-token (or "
                            b"WORKER_CONSOLE_TOKEN), or --console off; /metrics, /healthz and "
                            b"/readyz stay open\n")
        given = parse_qs(req.query).get("token", [None])[0]
        if given is not None and self._matches(given):
            return Response(302, _PLAIN, b"", (
                ("Location", req.path),
                ("Set-Cookie", f"{COOKIE}={quote(given, safe='')}; HttpOnly; SameSite=Strict; "
                               "Path=/")))
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self._matches(auth[7:].strip()):
            return None
        if self._matches(unquote(_cookie(req.headers.get("cookie", ""), COOKIE) or "")):
            return None
        return Response(401, _PLAIN, b"the console needs its token: open /?token=TOKEN once, "
                        b"or send Authorization: Bearer TOKEN\n",
                        (("WWW-Authenticate", 'Bearer realm="activity-worker console"'),))

    def _matches(self, given: str) -> bool:
        assert self._token is not None
        return hmac.compare_digest(given.encode(), self._token.encode())


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None
