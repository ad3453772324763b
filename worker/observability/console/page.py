"""The console page, rendered on the server from the same document `/status.json` serves, so it
reads without JavaScript; `console.js` then polls `/status.json` and fills the same elements.

Each table is declared once here (`TABLES`): the server renders its rows, and its header cells
carry the JSON key and format (`data-key`, `data-format`) that the script reads to fill it
again; the page's value fields carry `data-field` (a dotted path into the document). The
formats exist twice, here and in console.js (`FORMATS` there), and are kept to a few."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from worker.group_status import format_age

__all__ = ["SCRIPT", "STYLE", "TABLES", "render_page"]

_STATIC = resources.files("worker.observability.console") / "static"
SCRIPT: bytes = (_STATIC / "console.js").read_bytes()
STYLE: bytes = (_STATIC / "console.css").read_bytes()


NONE = "-"  # a value that is not there (console.js shows the same)


def age(v: Any) -> str:
    return format_age(None if v is None else float(v))


def _members(doc: dict[str, Any]) -> dict[str, str]:
    group = doc.get("group") or {}
    return {m["member_id"]: m["client_id"] for m in group.get("members", [])}


FORMATS: dict[str, Callable[[Any, dict[str, Any]], str]] = {
    "text": lambda v, d: NONE if v is None or v == "" else str(v),
    "int": lambda v, d: NONE if v is None else f"{int(v):,}",
    "age": lambda v, d: age(v),
    "assigned": lambda v, d: ", ".join(f"{a['topic']}[{a['partition']}]" for a in v or ())
    or NONE,
    "member": lambda v, d: _members(d).get(v, NONE) if v else NONE,
    "yesno": lambda v, d: "yes" if v else "no",
}


@dataclass(frozen=True, slots=True)
class Table:
    id: str
    title: str
    source: str  # dotted path of a list in the document
    columns: tuple[tuple[str, str, str], ...]  # (key, header, format)
    empty: str


TABLES: tuple[Table, ...] = (
    Table("partitions", "This worker's partitions", "worker.partitions", (
        ("topic", "topic", "text"), ("partition", "partition", "int"), ("lag", "lag", "int"),
        ("lag_seconds", "lag time", "age"), ("committed", "committed", "int"),
        ("commit_age_seconds", "commit age", "age")), "no partition assigned"),
    Table("processors", "Outcomes per processor", "worker.processors", (
        ("name", "processor", "text"), ("ok", "ok", "int"), ("duplicate", "duplicate", "int"),
        ("retried", "retried", "int"), ("dead_lettered", "dead-lettered", "int")),
        "no event processed yet"),
    Table("destinations", "Destinations (circuit breakers)", "worker.destinations", (
        ("name", "destination", "text"), ("state", "state", "text"),
        ("down_seconds", "down for", "age"), ("concurrency_limit", "limit", "int"),
        ("calls_refused", "held back", "int"), ("opened", "opened", "int")),
        "no processor"),
    Table("dead-letters", "Dead letters by reason", "worker.dead_letters", (
        ("reason", "reason", "text"), ("count", "letters", "int")), "none since the start"),
    Table("members", "Group members", "group.members", (
        ("client_id", "client", "text"), ("host", "host", "text"),
        ("instance_id", "instance", "text"), ("partitions", "partitions", "assigned"),
        ("target", "target (KIP-848)", "assigned")), "no members"),
    Table("group-partitions", "Group partitions (broker's view)", "group.partitions", (
        ("topic", "topic", "text"), ("partition", "partition", "int"),
        ("committed", "committed", "int"), ("end", "end", "int"), ("lag", "lag", "int"),
        ("lag_seconds", "lag time", "age"), ("member_id", "client", "member")),
        "no partitions"),
    Table("dlq", "Dead-letter topics", "group.dlq", (
        ("topic", "topic", "text"), ("depth", "letters", "int"), ("exists", "exists", "yesno")),
        "none"),
)


def lookup(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _field(doc: dict[str, Any], path: str, fmt: str = "text") -> str:
    return (f'<span data-field="{path}" data-format="{fmt}">'
            f"{html.escape(FORMATS[fmt](lookup(doc, path), doc))}</span>")


def _badge(doc: dict[str, Any], path: str, label: str) -> str:
    state = "on" if lookup(doc, path) else "off"
    return f'<span class="badge {state}" data-flag="{path}">{html.escape(label)}</span>'


def _table(t: Table, doc: dict[str, Any]) -> str:
    rows = lookup(doc, t.source) or []
    head = "".join(f'<th data-key="{key}" data-format="{fmt}">{html.escape(label)}</th>'
                   for key, label, fmt in t.columns)
    body = "".join("<tr>" + "".join(
        f'<td class="{fmt}">{html.escape(FORMATS[fmt](row.get(key), doc))}</td>'
        for key, _, fmt in t.columns) + "</tr>" for row in rows)
    return (f'<section class="card" id="{t.id}"><h2>{html.escape(t.title)}</h2>'
            f'<div class="scroll"><table data-source="{t.source}" '
            f'data-empty="{html.escape(t.empty)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{body or _empty_row(t)}</tbody></table></div></section>')


def _empty_row(t: Table) -> str:
    return f'<tr class="empty"><td colspan="{len(t.columns)}">{html.escape(t.empty)}</td></tr>'


def chart_svg(rates: list[float]) -> str:
    """Bars of events/s, oldest first (console.js draws the same)."""
    peak = max(rates, default=0) or 1
    n = max(len(rates), 1)
    bars = "".join(
        f'<rect x="{i * 600 / n:.1f}" y="{100 - r / peak * 100:.1f}" '
        f'width="{600 / n * 0.8:.1f}" height="{r / peak * 100:.1f}"></rect>'
        for i, r in enumerate(rates))
    return (f'<svg id="rate-chart" viewBox="0 0 600 100" preserveAspectRatio="none" '
            f'role="img" aria-label="events per second">{bars}</svg>')


def render_page(doc: dict[str, Any]) -> bytes:
    w = doc["worker"]
    open_txns = lookup(doc, "group_summary.open_transactions")
    rates = w["events_per_second"]["rates"]
    group_tables = "".join(_table(t, doc) for t in TABLES if t.source.startswith("group."))
    worker_tables = "".join(_table(t, doc) for t in TABLES if t.source.startswith("worker."))
    taken = time.strftime("%H:%M:%S")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>activity-worker · {html.escape(w["group"])}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="console.css">
</head><body>
<header>
  <h1>activity-worker <small>{_field(doc, "worker.version")}</small></h1>
  <p class="who">{_field(doc, "worker.host")} · pid {_field(doc, "worker.pid")} · group
    <b>{_field(doc, "worker.group")}</b> · up {_field(doc, "worker.uptime_seconds", "age")}</p>
  <p class="badges">{_badge(doc, "worker.ready", "ready")}{_badge(doc, "worker.connected",
    "Kafka")}{_badge(doc, "worker.ledger.up", "ledger " + str(w["ledger"]["kind"]))}{
    _badge(doc, "worker.dlq_writable", "DLQ writable")}</p>
  <p class="updated">updated <span id="updated">{taken}</span>
    <span id="poll-error" hidden></span></p>
</header>
<main>
<section class="card wide" id="rate">
  <h2>Events/s <small>last 10 minutes, 10 s bars · now
    <span id="rate-now">{rates[-1] if rates else 0:g}</span>/s · consumed
    {_field(doc, "worker.totals.consumed", "int")} · retries
    {_field(doc, "worker.retries", "int")} · unmatched
    {_field(doc, "worker.totals.unmatched", "int")}</small></h2>
  {chart_svg(rates)}
  <p class="effects" data-show="worker.effects"{"" if w["effects"] else " hidden"}>async
    effects in flight {_field(doc, "worker.effects.in_flight", "int")}
    of {_field(doc, "worker.effects.max_in_flight", "int")} · queued
    {_field(doc, "worker.effects.queued", "int")}</p>
</section>
{worker_tables}
<section class="card wide" id="group">
  <h2>Consumer group {_field(doc, "group.group")} <small>state
    <b>{_field(doc, "group.state")}</b> · protocol {_field(doc, "group.protocol")} · members
    {_field(doc, "group_summary.members", "int")} · lag
    {_field(doc, "group_summary.lag", "int")} events,
    {_field(doc, "group_summary.lag_seconds", "age")} · dead letters
    {_field(doc, "group_summary.dead_letters", "int")} · view
    {_field(doc, "group_age_seconds", "age")} old</small></h2>
  <p class="error" data-field="group_error" data-format="text"
    {"" if doc.get("group_error") else "hidden"}>{html.escape(doc.get("group_error") or "")}</p>
  <p class="error" data-field="group_summary.open_transactions" data-format="text"
    {"" if open_txns else "hidden"}>{html.escape(open_txns or "")}</p>
</section>
{group_tables}
</main>
<script src="console.js"></script>
</body></html>
"""
    return page.encode()
