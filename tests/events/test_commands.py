"""The validate, types, generate and schemas subcommands, run as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from devtools.generate import BAD_KINDS, BAD_KINDS_EXPECTED, EventGenerator, expected_counts
from worker.cli import main
from worker.errors import EventDecodeError
from worker.events import KNOWN_TYPES, decode_event

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`python -m worker ARGS` from the repository root (this checkout's `worker`)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


# --- generate ------------------------------------------------------------------------------------


def test_generate_is_deterministic_and_counts_what_it_made() -> None:
    a = run_cli("generate", "-n", "2000", "--seed", "7", "--duplicate-share", "0.1",
                "--bad-share", "0.05")  # fmt: skip
    b = run_cli("generate", "-n", "2000", "--seed", "7", "--duplicate-share", "0.1",
                "--bad-share", "0.05")  # fmt: skip
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    lines = a.stdout.splitlines()
    assert len(lines) == 2000
    c = expected_counts(2000, seed=7, duplicate_share=0.1, bad_share=0.05)
    assert c.total == 2000 and c.ok + c.duplicates + c.bad == 2000
    assert 100 < c.duplicates < 300 and 40 < c.bad < 170
    assert f"{c.ok} ok, {c.duplicates} duplicates, {c.bad} bad" in a.stderr.decode()


def test_generated_records_are_what_they_say() -> None:
    gen = EventGenerator(seed=11, duplicate_share=0.1, bad_share=0.1)
    seen: dict[bytes, str] = {}
    group_sizes: dict[str, int] = {}
    customers: dict[bytes, int] = {}
    for rec in gen.records(5000):
        if rec.kind == "duplicate":
            assert rec.value in seen  # a byte-identical redelivery of an earlier event
            continue
        if rec.kind.startswith("bad:"):
            error_class, stage = BAD_KINDS_EXPECTED[rec.kind[4:]]
            with pytest.raises(EventDecodeError) as info:
                event = decode_event(rec.value)
                assert stage == "data"
                _ = event.data
            assert info.value.error_class == error_class
            continue
        assert rec.kind == "ok"
        event = decode_event(rec.value)
        _ = event.data
        assert event.id.startswith("evcus_") and event.group_id.startswith("v-")
        assert rec.key.startswith(b"cust_")
        assert rec.value not in seen  # ok events are unique
        seen[rec.value] = event.id
        group_sizes[event.group_id] = group_sizes.get(event.group_id, 0) + 1
        customers[rec.key] = customers.get(rec.key, 0) + 1
    assert set(gen.counts.by_bad_kind) == set(BAD_KINDS)
    assert set(gen.counts.by_type) == set(KNOWN_TYPES)  # every type occurs
    assert max(group_sizes.values()) >= 3  # one request, several events
    assert max(customers.values()) >= 10  # customers recur


def test_order_paid_request_shares_one_group_id() -> None:
    gen = EventGenerator(seed=5)
    groups: dict[str, list[str]] = {}
    for rec in gen.records(3000):
        event = decode_event(rec.value)
        groups.setdefault(event.group_id, []).append(event.type)
    paid = [g for g in groups.values() if g[0] == "customer.order.paid" and len(g) > 1]
    assert paid
    assert all(
        g[1:3] == ["customer.rewarded.loyalty_points", "customer.voucher.loyalty_card.points_added"]
        for g in paid
    )


def test_generate_rate_paces_output(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    started = time.monotonic()
    assert main(["generate", "-n", "30", "--rate", "100", "--quiet"]) == 0
    elapsed = time.monotonic() - started
    out = capsysbinary.readouterr()
    assert len(out.out.splitlines()) == 30
    # 30 events at 100/s: the 30th is due 0.29 s after the first (unpaced it takes ~2 ms).
    assert elapsed >= 0.29
    assert out.err == b""


def test_generate_rejects_bad_shares() -> None:
    result = run_cli("generate", "--duplicate-share", "1.5")
    assert result.returncode == 2
    assert b"fraction" in result.stderr


# --- validate ------------------------------------------------------------------------------------


def test_validate_clean_file_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(run_cli("generate", "-n", "500", "--seed", "1", "-q").stdout)
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stdout
    out = result.stdout.decode()
    assert "OK: 500 events, 0 invalid" in out
    assert "customer.order.paid" in out


def test_validate_reports_each_bad_line_and_exits_one(tmp_path: Path) -> None:
    good = run_cli("generate", "-n", "3", "--seed", "1", "-q").stdout.splitlines()
    bad_data = good[0].replace(b'"customer":{"id":"cust_', b'"customer":{"id":7,"x":"cust_')
    lines = [good[0], b"[1,2]", b"", bad_data, b'{"id":"evcus_9", "type":"x"', good[1]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    out = result.stdout.decode()
    assert "line 2: $: expected object, got array [not_an_object]" in out
    assert "line 4 (evcus_" in out and ": $.data.customer.id: expected str, got int [schema]" in out
    assert "line 5: $: input data was truncated [invalid_json]" in out
    assert "INVALID: 5 events, 3 invalid" in out  # the blank line is not an event


def test_validate_json_output_and_stdin() -> None:
    gen = EventGenerator(seed=3, bad_share=0.2)
    data = b"".join(r.value + b"\n" for r in gen.records(300))
    result = run_cli("validate", "--json", "-", stdin=data)
    assert result.returncode == 1
    records = [msgspec.json.decode(line) for line in result.stdout.splitlines()]
    errors, summary = records[:-1], records[-1]["summary"]
    assert len(errors) == gen.counts.bad == summary["invalid"]
    assert summary["valid"] == gen.counts.ok
    assert summary["lines"] == 300
    assert sum(summary["invalid_by_error_class"].values()) == gen.counts.bad
    for err in errors:
        assert set(err) == {"line", "id", "type", "error_class", "path", "reason"}
        assert err["path"].startswith("$") and err["reason"]


def test_validate_missing_file_says_what_to_do(tmp_path: Path) -> None:
    result = run_cli("validate", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert b"cannot read" in result.stderr and b"check the path" in result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="reads peak RSS from /proc (Linux)")
def test_validate_streams_a_large_file_in_flat_memory(tmp_path: Path) -> None:
    """~110 MB of events are validated with a peak RSS far below the file size."""
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        gen = EventGenerator(seed=9)
        for _ in range(12):
            f.write(b"".join(r.value + b"\n" for r in gen.records(10_000)))
    size_mb = path.stat().st_size / 2**20
    assert size_mb > 100
    # VmHWM (peak RSS of this process image); ru_maxrss would carry over the parent's across exec.
    code = (
        "import re, sys\n"
        "from worker.cli import main\n"
        "rc = main(['validate', sys.argv[1]])\n"
        "status = open('/proc/self/status').read()\n"
        "print('MAXRSS', re.search(r'VmHWM:\\s+(\\d+)', status).group(1), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-500:]
    maxrss_mb = int(result.stderr.split(b"MAXRSS")[1].split()[0]) / 1024
    assert maxrss_mb < 70, f"peak RSS {maxrss_mb:.0f} MB for a {size_mb:.0f} MB file"


# --- types and schemas ---------------------------------------------------------------------------


def test_types_lists_all_74(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["types", "--json"]) == 0
    rows = msgspec.json.decode(capsys.readouterr().out)
    assert len(rows) == 74 and {r["type"] for r in rows} == set(KNOWN_TYPES)
    untyped = [r["type"] for r in rows if not r["typed"]]
    assert untyped == ["customer.voucher.loyalty_card.points_activated"]
    assert main(["types"]) == 0
    table = capsys.readouterr().out
    assert "customer.order.paid" in table and "OrderData" in table
    assert "74 types, 73 with a typed data schema" in table


def test_types_family_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["types", "--json", "--family", "messaging"]) == 0
    assert len(msgspec.json.decode(capsys.readouterr().out)) == 27
    assert main(["types", "--family", "nope"]) == 2
    assert "use one of" in capsys.readouterr().err


def test_schemas_command_writes_and_checks(tmp_path: Path) -> None:
    assert main(["schemas", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "envelope.json").exists()
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "envelope.json").write_text("{}")
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 1


def test_help_of_each_command() -> None:
    for name in ("validate", "types", "generate", "schemas"):
        result = run_cli(name, "--help")
        assert result.returncode == 0 and b"usage: activity-worker" in result.stdout


def test_top_level_help_imports_no_subcommand() -> None:
    """`activity-worker --help` imports only what it shows (measured: 27 worker modules and
    ~0.13 s before, 4 modules and ~0.02 s after)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "worker", "--help"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "COMMAND" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    ours = {m for m in imported if m == "worker" or m.startswith("worker.")}
    assert ours == {"worker", "worker.cli", "worker.errors", "worker.vocabulary"}
    assert not imported & {"msgspec", "structlog", "confluent_kafka", "prometheus_client"}


def test_the_dev_tools_say_so_where_no_checkout_provides_them(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Installed from the wheel, `devtools/` is absent: `generate` and `kafka` say what to do."""
    from worker.cli import main

    monkeypatch.setitem(sys.modules, "devtools.generate", None)
    monkeypatch.setitem(sys.modules, "devtools.local_broker", None)
    monkeypatch.setitem(sys.modules, "devtools", None)
    assert main(["generate", "--count", "1"]) == 2
    assert "development tool" in capsys.readouterr().err
    assert main(["kafka", "status"]) == 2
    assert "run deploy/local/kafka from a checkout" in capsys.readouterr().err


def test_the_wheel_ships_the_product_package_only(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    import zipfile

    [wheel] = tmp_path.glob("activity_worker-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "worker" in tops
    assert not tops & {"devtools", "tests", "bench", "deploy", "scripts"}
