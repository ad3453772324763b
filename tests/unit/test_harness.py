"""worker.testing.Harness, and the testing example of docs/processors.md."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from worker.events import Event
from worker.processors.api import Context, Processor, RetryPolicy
from worker.testing import Harness

DOC = Path(__file__).resolve().parents[2] / "docs" / "processors.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_documented_harness_example_passes(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    module_src, test_src = _blocks()[0], _blocks()[1]
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "processors.py").write_text(module_src)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("my_pkg", "my_pkg.processors"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    namespace: dict[str, Any] = {}
    exec(compile(test_src, str(DOC), "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_")]
    assert tests, "the documented harness example defines no test"
    for test in tests:
        test()


def _event(n: int, type_: str = "customer.order.paid") -> dict[str, Any]:
    return {"id": f"evcus_{n}", "type": type_, "group_id": f"v-{n}",
            "created_at": "2024-03-11T12:06:34.423Z", "data": {}}


def test_harness_counts_retries_and_dead_letters_across_sends() -> None:
    attempts: list[int] = []

    def flaky(event: Event, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("always")

    procs = [Processor("flaky", ("customer.order.*",), flaky,
                       retry=RetryPolicy(max_attempts=2, initial_backoff=5.0))]
    with Harness(procs, ledger="memory://", unmatched="dead_letter") as h:
        r = h.send(_event(1), _event(2, "customer.segment.left"))
        assert attempts == [1, 2]  # the 5 s backoff is skipped in the harness
        assert r.outcomes == {("flaky", "retried"): 1, ("flaky", "dead_lettered"): 1}
        assert [d.error_class for d in r.dead_letters] == ["unmatched", "processor_failed"]
        assert r.unmatched == {"customer.segment.left": 1}
        h.send(b"\xff")
        assert [d.error_class for d in h.dead_letters][-1] == "undecodable"


def test_query_needs_a_sql_ledger() -> None:
    with Harness([], ledger="memory://") as h, pytest.raises(RuntimeError, match="SQL ledger"):
        h.query("SELECT 1")


def test_builtins_in_the_harness_write_their_read_models() -> None:
    from devtools.generate import generate_events

    with Harness(builtins=True) as h:
        values = list(generate_events(count=400, seed=3, duplicate_share=0.0, bad_share=0.0))
        r = h.send(*values)
        assert r.dead_letters == []
        assert h.query("SELECT COUNT(*) FROM rm_message_deliveries")[0][0] > 0
