"""The ops console on the worker's metrics address: `/` (a page rendered on the server,
refreshed by a small script), `/status.json` (its document, docs/observability.md#the-console),
`/console.js` and `/console.css`. Read-only; it shows counts, offsets and names, never a
payload, a key or a secret. Who may see it: worker.observability.console.access."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from worker.group_status import GroupStatus, open_transactions
from worker.observability.console.access import ConsoleAccess
from worker.observability.console.group_cache import GroupViewCache
from worker.observability.console.page import SCRIPT, STYLE, render_page
from worker.observability.console.state import ConsoleState
from worker.observability.http import Request, Response

__all__ = ["CONSOLE_PATHS", "Console", "ConsoleAccess", "ConsoleState", "GroupViewCache"]

CONSOLE_PATHS = ("/", "/status.json", "/console.js", "/console.css")
#: The page loads nothing from elsewhere: no CDN, no inline script, no frames.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class Console:
    def __init__(self, state: ConsoleState, group: GroupViewCache | None,
                 access: ConsoleAccess) -> None:
        self.state, self.group, self.access = state, group, access

    def document(self) -> dict[str, Any]:
        """What /status.json serves: this worker, and the group as the broker sees it."""
        cached = self.group.get() if self.group is not None else None
        status: GroupStatus | None = cached.status if cached else None
        return {
            "worker": self.state.snapshot(),
            "group": msgspec.to_builtins(status) if status is not None else None,
            "group_summary": None if status is None else {
                "members": len(status.members), "lag": status.total_lag,
                "lag_seconds": status.max_lag_seconds,
                "dead_letters": sum(d.depth for d in status.dlq),
                "open_transactions": "; ".join(open_transactions(status)) or None},
            "group_error": cached.error if cached else "the group view is off",
            "group_age_seconds": cached.age_seconds if cached else None,
        }

    def route(self, req: Request) -> Response | None:
        if req.path not in CONSOLE_PATHS:
            return None
        refusal = self.access.refusal(req)
        if refusal is not None:
            return refusal
        headers = (("Content-Security-Policy", _CSP), ("X-Content-Type-Options", "nosniff"),
                   ("Referrer-Policy", "no-referrer"))
        if req.path == "/console.js":
            return Response(200, "text/javascript; charset=utf-8", SCRIPT, headers)
        if req.path == "/console.css":
            return Response(200, "text/css; charset=utf-8", STYLE, headers)
        doc = self.document()
        if req.path == "/status.json":
            return Response(200, "application/json", json.dumps(doc).encode(), headers)
        return Response(200, "text/html; charset=utf-8", render_page(doc), headers)

    def close(self) -> None:
        if self.group is not None:
            self.group.close()



def open_console(host: str, token: str | None, group: str, topics: list[str],
                 dlq_topics: list[str], ledger_url: str,
                 kafka_config: dict[str, Any]) -> Console:
    """The console of a worker whose metrics address binds `host`; its group view reads the
    broker with `kafka_config` (the worker's own settings, less what only its consumer
    takes)."""
    from worker.kafka.group_view import GroupInspector

    inspector = GroupInspector(kafka_config)
    cache = GroupViewCache(lambda: inspector.status(group, topics, dlq_topics),
                           close=inspector.close)
    kind = ledger_url.partition(":")[0] or "unknown"  # the scheme only: a URL may hold secrets
    return Console(ConsoleState(group, topics, kind), cache, ConsoleAccess(token, host))
