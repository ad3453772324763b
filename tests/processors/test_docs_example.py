"""Executes the example of docs/processors.md, so the documentation cannot rot."""

from __future__ import annotations

import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from worker.cli import main
from worker.events import Event
from worker.processing.routing import Router
from worker.processors.api import Context, Processor
from worker.processors.discovery import load_processors

from .conftest import make_event

DOC = Path(__file__).resolve().parents[2] / "docs" / "processors.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"docs_example_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(blocks("python")[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def dispatch(router: Router, events: list[Event], conn: Any) -> list[tuple[str, str]]:
    """A minimal stand-in for pipeline + ledger: run each (processor, key) once."""
    done: set[str] = set()
    ran: list[tuple[str, str]] = []
    for event in events:
        for proc in router.resolve(event.type):
            key = proc.idempotency_key(event)
            if key in done:
                continue
            proc.func(event, Context(proc, event, "customer-activity", 0, 0, conn))
            done.add(key)
            ran.append((proc.name, event.id))
        conn.commit()
    return ran


def test_the_documented_example_runs(example: str, tmp_path: Path) -> None:
    procs = load_processors([example], entry_points=False, builtins=False)
    by_name: dict[str, Processor] = {p.name: p for p in procs}
    assert list(by_name) == ["count_upgrades", "request_audit", "ship_order"]
    assert [by_name[n].key_scope for n in by_name] == ["event", "group", "custom"]
    assert by_name["count_upgrades"].settings == {"log_every": 1000}
    router = Router(procs)
    assert router.unused_patterns() == []

    conn = sqlite3.connect(tmp_path / "ledger.db")
    for proc in procs:
        if proc.setup:
            proc.setup(conn)
    up = {"customer": {"id": "cust_1"}}
    e1 = make_event("customer.loyalty.tier.upgraded", up, group_id="v-1")
    e2 = make_event("customer.loyalty.tier.upgraded", up, group_id="v-2")
    paid = make_event("customer.order.paid", {"order": {"id": "ord_1"}}, group_id="v-3")
    fulfilled = make_event("customer.order.fulfilled", {"order": {"id": "ord_1"}},
                           group_id="v-4")
    ran = dispatch(router, [e1, e1, e2, paid, fulfilled], conn)  # e1 is redelivered
    assert ran == [("count_upgrades", e1.id), ("request_audit", e1.id),
                   ("count_upgrades", e2.id), ("request_audit", e2.id),
                   ("request_audit", paid.id), ("ship_order", paid.id),
                   ("request_audit", fulfilled.id)]
    assert conn.execute("SELECT customer_id, n FROM upgrades").fetchall() == [("cust_1", 2)]


def test_the_documented_routes_output_is_what_the_command_prints(
        example: str, capsys: pytest.CaptureFixture[str]) -> None:
    console = blocks("console")[0]
    expected = console.split("--processors my_pkg.processors\n", 2)[2].rstrip("\n")
    code = main(["routes", "customer.loyalty.tier.upgraded", "--processors", example])
    assert code == 0
    assert capsys.readouterr().out.rstrip("\n") == expected
