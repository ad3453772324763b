"""The console's parts without a broker: the token rule, the group view cache (never blocks a
request, fetches at most once per max age), what this worker's state shows (and what it never
shows), and the server-rendered page."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest

from worker.commands.status import print_table
from worker.group_status import Assigned, GroupStatus, MemberStatus, from_json, to_json
from worker.observability.console import Console
from worker.observability.console.access import ConsoleAccess, is_loopback
from worker.observability.console.group_cache import GroupViewCache
from worker.observability.console.page import FORMATS, TABLES
from worker.observability.console.state import RATE_BUCKETS, ConsoleState
from worker.observability.http import Request, Response
from worker.types import BatchResult, BatchStats, TopicPartition
from worker.vocabulary import ErrorClass, Outcome


def _req(path: str = "/", query: str = "", **headers: str) -> Request:
    return Request("GET", path, query, {k.lower(): v for k, v in headers.items()})


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("worker.example", False)])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _code(response: Response | None) -> int | None:
    return None if response is None else response.status


def test_the_token_rule() -> None:
    assert ConsoleAccess(None, "127.0.0.1").refusal(_req()) is None
    refused = ConsoleAccess(None, "0.0.0.0").refusal(_req())
    assert refused is not None and refused.status == 403
    guarded = ConsoleAccess("t0k;en", "127.0.0.1")  # a token is asked for on loopback too
    assert _code(guarded.refusal(_req())) == 401
    assert guarded.refusal(_req(Authorization="Bearer t0k;en")) is None
    assert _code(guarded.refusal(_req(Authorization="Bearer nope"))) == 401
    trade = guarded.refusal(_req("/", "token=t0k%3Ben"))
    assert trade is not None and trade.status == 302
    cookie = dict(trade.headers)["Set-Cookie"].split(";")[0]
    assert "t0k;en" not in cookie  # quoted
    assert guarded.refusal(_req(Cookie=f"other=1; {cookie}")) is None


def _status(group: str = "g") -> GroupStatus:
    return GroupStatus(group=group, state="stable", protocol="classic", assignor="",
                       coordinator=1, members=[], partitions=[], dlq=[], taken_at=time.time())


def test_the_group_cache_never_blocks_and_fetches_at_most_once_per_max_age() -> None:
    release = threading.Event()
    calls: list[float] = []
    now = [100.0]

    def fetch() -> GroupStatus:
        calls.append(now[0])
        release.wait(10)
        return _status()

    cache = GroupViewCache(fetch, max_age=5.0, clock=lambda: now[0])
    t0 = time.monotonic()
    first = cache.get()
    assert first.status is None and time.monotonic() - t0 < 0.5  # the broker is slow: no wait
    assert cache.get().status is None and len(calls) == 1  # one refresh at a time
    release.set()
    deadline = time.monotonic() + 5
    while cache.get().status is None and time.monotonic() < deadline:
        time.sleep(0.01)
    got = cache.get()
    assert got.status is not None and got.status.group == "g" and got.error is None
    now[0] += 4.0
    cache.get()
    assert len(calls) == 1  # still fresh
    now[0] += 1.0
    cache.get()
    assert len(calls) == 2
    cache.close()


def test_a_failing_fetch_is_shown_not_raised() -> None:
    def fetch() -> GroupStatus:
        raise RuntimeError("broker said no")

    cache = GroupViewCache(fetch)
    cache.get()
    deadline = time.monotonic() + 5
    while cache.get().error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get().error == "RuntimeError: broker said no"
    cache.close()


def _state() -> ConsoleState:
    state = ConsoleState("g", ["t"], "postgresql")
    tp = TopicPartition("t", 0)
    state.partitions_assigned([tp, TopicPartition("t", 1)])
    stats = BatchStats(batch_size=3)
    stats.consumed["t"] += 3
    stats.outcomes[("p<script>", Outcome.OK)] += 2
    stats.outcomes[("p<script>", Outcome.RETRIED)] += 1
    stats.dead_letters[ErrorClass.SCHEMA] += 1
    state.batch_finished(BatchResult(completed=True, stats=stats))
    state.record_lag(tp, 5, 1.5)
    state.record_commit(tp, 40)
    state.partitions_revoked([TopicPartition("t", 1)])
    return state


def test_the_worker_state() -> None:
    doc = _state().snapshot()
    assert doc["totals"]["consumed"] == 3 and doc["retries"] == 1
    assert doc["processors"] == [{"name": "p<script>", "ok": 2, "duplicate": 0, "retried": 1,
                                  "dead_lettered": 0}]
    assert doc["dead_letters"] == [{"reason": "schema", "count": 1}]
    assert [(p["partition"], p["lag"], p["committed"]) for p in doc["partitions"]] == [
        (0, 5, 40)]
    rates = doc["events_per_second"]["rates"]
    assert len(rates) == RATE_BUCKETS and rates[-1] == 0.3
    assert doc["ledger"] == {"kind": "postgresql", "up": True}
    assert doc["destinations"] == []


def test_the_worker_state_shows_each_destination() -> None:
    from worker.processing.circuit import CircuitPolicy, Circuits

    now = [50.0]
    circuits = Circuits(CircuitPolicy(failures_to_open=1), clock=lambda: now[0])
    circuits.add("mail", 4)
    circuits.add("crm", 256).failure(retry_after=60.0)
    assert circuits["crm"].ask(None, first=True)
    now[0] += 42.0
    state = _state()
    state.watch(lambda: True, None, None, circuits.all)
    assert state.snapshot()["destinations"] == [
        {"name": "crm", "state": "open", "down_seconds": 42.0, "concurrency_limit": 256,
         "calls_refused": 1, "opened": 1},
        {"name": "mail", "state": "closed", "down_seconds": 0.0, "concurrency_limit": 4,
         "calls_refused": 0, "opened": 0}]
    console = Console(state, None, ConsoleAccess(None, "127.0.0.1"))
    page = console.route(_req("/"))
    assert page is not None
    assert 'data-source="worker.destinations"' in page.body.decode()
    assert "<td class=\"text\">open</td>" in page.body.decode()


def test_the_page_renders_every_table_and_escapes_names() -> None:
    console = Console(_state(), None, ConsoleAccess(None, "127.0.0.1"))
    page = console.route(_req("/"))
    assert page is not None and page.status == 200
    html = page.body.decode()
    for table in TABLES:
        assert f'id="{table.id}"' in html
    assert "p&lt;script&gt;" in html and "<script>" not in html.replace(
        '<script src="console.js"></script>', "")
    assert 'data-source="worker.partitions"' in html and "<td class=\"int\">40</td>" in html
    assert console.route(_req("/elsewhere")) is None


def test_a_kip848_member_s_target_is_shown_where_it_differs() -> None:
    holding = MemberStatus("m-1", "worker-a", "/127.0.0.1", None,
                           [Assigned("t", 0), Assigned("t", 1)], target=[Assigned("t", 0)])
    settled = MemberStatus("m-2", "worker-b", "/127.0.0.1", "b", [Assigned("t", 2)],
                           target=[Assigned("t", 2)])
    status = GroupStatus(group="g", state="reconciling", protocol="consumer", assignor="uniform",
                         coordinator=1, members=[holding, settled], partitions=[], dlq=[],
                         taken_at=time.time())
    assert holding.in_flight and not settled.in_flight
    out = io.StringIO()
    print_table(status, out)
    lines = out.getvalue().splitlines()
    assert "state reconciling  protocol consumer (uniform)" in lines[0]
    assert lines[2].split() == ["MEMBER", "CLIENT", "HOST", "INSTANCE", "PARTITIONS", "TARGET"]
    assert lines[3].split()[-3:] == ["t[0],", "t[1]", "t[0]"]
    assert lines[4].split()[-1] == "same"
    classic = MemberStatus("m-3", "worker-c", "/127.0.0.1", None, [Assigned("t", 0)])
    out = io.StringIO()
    print_table(GroupStatus(group="g", state="stable", protocol="classic", assignor="",
                            coordinator=1, members=[classic], partitions=[], dlq=[],
                            taken_at=time.time()), out)
    assert "TARGET" not in out.getvalue() and not classic.in_flight
    # The console's members table: the target column, '-' for a classic member.
    assigned = FORMATS["assigned"]
    assert assigned(None, {}) == "-" and assigned([{"topic": "t", "partition": 0}], {}) == "t[0]"
    doc = json.loads(to_json(status))
    assert [m["target"] for m in doc["members"]] == [[{"topic": "t", "partition": 0}],
                                                      [{"topic": "t", "partition": 2}]]
    assert from_json(to_json(status)) == status
