"""The `routes`, `processors` and `report` commands, run in-process and (once) as a program."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from worker.cli import main
from worker.events.types import KNOWN_TYPES
from worker.processing.routing import Router
from worker.processors.api import Context

from .conftest import builtin, make_event

REPO = Path(__file__).resolve().parents[2]


def module_with(root: Path, body: str) -> str:
    name = f"cmdmod_{uuid.uuid4().hex[:10]}"
    (root / f"{name}.py").write_text("from worker.processors import processor\n\n"
                                     + textwrap.dedent(body))
    return name


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("WORKER_PROCESSORS", raising=False)
    monkeypatch.delenv("WORKER_BUILTIN_PROCESSORS", raising=False)
    monkeypatch.delenv("WORKER_LEDGER", raising=False)
    return tmp_path


def test_routes_lists_processors_patterns_and_types(root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes"]) == 0
    out = capsys.readouterr().out
    assert "1. loyalty_tiers" in out
    assert "   customer.loyalty.tier.**  -> 6 known type(s)\n" in out
    assert "      customer.loyalty.tier.expiration.changed\n" in out
    routed = 6 + 9 + 4 + 27
    assert f"{routed} of 74 known types are routed; {74 - routed} match no processor" in out
    assert "\n   customer.order.paid\n" in out  # listed as unrouted


def test_routes_warns_about_a_pattern_matching_no_known_type(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mod = module_with(root, """
        @processor("customer.loyalty.teir.*", name="typo_tiers")
        def f(event, ctx): pass
    """)
    assert main(["routes", "--processors", mod, "--no-builtin-processors"]) == 0
    captured = capsys.readouterr()
    assert ("warning: processor 'typo_tiers': pattern 'customer.loyalty.teir.*' matches none "
            "of the 74 known types") in captured.err
    assert "0 of 74 known types are routed" in captured.out


def test_routes_for_one_type_prints_the_processors_in_order(
        root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    mod = module_with(root, """
        @processor("customer.*.failed", "customer.redemption.**", name="all_failures")
        def f(event, ctx): pass
    """)
    monkeypatch.setenv("WORKER_PROCESSORS", mod)
    assert main(["routes", "customer.redemption.failed"]) == 0
    assert capsys.readouterr().out == (
        "customer.redemption.failed\n"
        "   1. redemptions  (pattern customer.redemption.**; key: event)\n"
        "   2. all_failures  (pattern customer.*.failed, customer.redemption.**; key: event)\n")
    assert main(["routes", "customer.consents.given"]) == 0
    out = capsys.readouterr().out
    assert "customer.consents.given  (not one of the known types)" in out
    assert "no processor matches" in out


def test_startup_errors_exit_2_with_one_clear_line(root: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    mod = module_with(root, """
        @processor("customer.{sms,email.failed", name="broken")
        def f(event, ctx): pass
    """)
    assert main(["processors", "--processors", mod]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: processor 'broken': invalid pattern 'customer.{sms,email.failed'")
    assert err.count("\n") == 1
    assert main(["routes", "--processors", "no_such_module_zz"]) == 2
    assert "no_such_module_zz" in capsys.readouterr().err


def test_processors_lists_names_patterns_and_key_scope(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mod = module_with(root, """
        @processor("customer.order.paid", name="once_per_request", once_per="group")
        def f(event, ctx):
            '''Audit one request.'''
    """)
    assert main(["processors", "--processors", mod]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["#", "NAME", "PATTERNS", "KEY", "ON", "FAILURE", "RETRIES",
                                "MODULE"]
    assert lines[1].split()[:3] == ["1", "loyalty_tiers", "customer.loyalty.tier.**"]
    assert lines[5].split() == ["5", "once_per_request", "customer.order.paid", "group",
                                "dead_letter", "3", mod]
    assert "once_per_request: Audit one request." in lines


def test_report_without_a_database_says_what_to_do(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = root / "nope.db"
    assert main(["report", "--ledger", f"sqlite:///{missing}"]) == 2
    assert "no ledger database at" in capsys.readouterr().err
    sqlite3.connect(root / "empty.db").close()
    assert main(["report", "--ledger", f"sqlite:///{root / 'empty.db'}"]) == 2
    assert "no read-model tables yet" in capsys.readouterr().err
    assert main(["report", "--ledger", "redis://localhost:6379/0"]) == 2
    assert "keeps no read models" in capsys.readouterr().err


def test_report_summarises_the_read_models(root: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = root / "ledger.db"
    conn = sqlite3.connect(path)
    procs = {n: builtin(n) for n in ("loyalty_tiers", "loyalty_points", "redemptions",
                                     "messaging_delivery")}
    for proc in procs.values():
        assert proc.setup is not None
        proc.setup(conn)
    gold = {"id": "ltr_gold", "name": "Gold"}
    camp = {"id": "camp_1", "name": "Loyalty"}
    events = [
        make_event("customer.loyalty.tier.joined", {"customer": {"id": "c1"}, "campaign": camp,
                                                    "loyalty_tier": gold}),
        make_event("customer.loyalty.tier.joined", {"customer": {"id": "c2"}, "campaign": camp,
                                                    "loyalty_tier": gold}),
        make_event("customer.voucher.loyalty_card.points_added",
                   {"customer": {"id": "c1"}, "voucher": {"id": "v1"},
                    "balance": {"points": 120, "balance": 120}}),
        make_event("customer.redemption.failed",
                   {"campaign": {"id": "camp_2", "name": "Summer"},
                    "redemption": {"failure_code": "voucher_expired"}}),
        make_event("customer.redemption.succeeded", {"campaign": {"id": "camp_2",
                                                                  "name": "Summer"}}),
        make_event("customer.email.sent", {}), make_event("customer.email.sent", {}),
        make_event("customer.email.sent", {}), make_event("customer.email.failed", {}),
    ]
    router = Router(list(procs.values()))
    for event in events:
        for proc in router.resolve(event.type):
            proc.func(event, Context(proc, event, "t", 0, 0, conn))
    conn.commit()
    conn.close()
    monkeypatch.setenv("WORKER_LEDGER", f"sqlite:///{path}")
    assert main(["report"]) == 0
    assert capsys.readouterr().out == (
        "Loyalty tiers (customers per current tier)\n"
        "       2  Gold  (Loyalty)\n"
        "Loyalty points\n"
        "  1 card(s) of 1 customer(s): balance 120 points, pending 0, 1 transaction(s)\n"
        "     120  c1\n"
        "Redemptions per campaign (succeeded / failed / rolled back / rollback failed)\n"
        "  Summer: 1 / 1 / 0 / 0\n"
        "  failure codes: voucher_expired 1\n"
        "Message delivery per channel (sent / failed / recovered, failure rate)\n"
        "  email: 3 / 1 / 0, 25.0% failed\n")


def test_commands_run_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "routes", KNOWN_TYPES[0]], cwd=REPO,
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("customer.confirmed\n   no processor matches")
    result = subprocess.run([sys.executable, "-m", "worker", "report", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "--ledger URL" in result.stdout


@pytest.mark.postgres
def test_report_reads_a_postgresql_ledger(capsys: pytest.CaptureFixture[str],
                                          postgres_url: str) -> None:
    url = postgres_url
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        with psycopg.connect(url, options=f"-c search_path={schema}") as conn:
            proc = builtin("messaging_delivery")
            assert proc.setup is not None
            proc.setup(conn)
            for type_ in ("customer.sms.sent", "customer.sms.failed"):
                event = make_event(type_, {})
                proc.func(event, Context(proc, event, "t", 0, 0, conn))
            conn.commit()
        sep = "&" if "?" in url else "?"
        scoped = f"{url}{sep}options=-csearch_path%3D{schema}"
        assert main(["report", "--ledger", scoped]) == 0
        out = capsys.readouterr().out
        assert "  sms: 1 / 1 / 0, 50.0% failed\n" in out
        assert "Loyalty tiers (customers per current tier)\n  (none)\n" in out
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
