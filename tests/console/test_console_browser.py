"""The console in a real browser: headless Chromium from Debian's packages (/usr/bin/chromium,
driven by Playwright; no browser is downloaded) on a real worker that consumed events this test
produced. The page shows the worker's partitions, its processors and the dead-letter reasons
the test caused, follows new events without a reload, and logs no error. Screenshots (wide and
phone) go to .local/artefacts/console/."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.generate import BAD_KINDS_EXPECTED, EventGenerator
from tests.console.conftest import REPO, StartWorker, get
from tests.kafka_helpers import KafkaHelper

pytestmark = pytest.mark.kafka

CHROMIUM = "/usr/bin/chromium"
ARTEFACTS = REPO / ".local" / "artefacts" / "console"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _doc(base: str) -> dict[str, Any]:
    status, body = get(f"{base}/status.json")
    assert status == 200, body
    doc: dict[str, Any] = json.loads(body)
    return doc


def _wait_doc(base: str, what: str, ok: Any, deadline_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = _doc(base)
        if ok(doc):
            return doc
        time.sleep(0.3)
    raise AssertionError(f"{what} not seen in {deadline_s:.0f}s: {json.dumps(doc)[:2000]}")


def _wait_js(page: Any, expression: str, deadline_s: float = 30) -> None:
    """Poll a JavaScript expression until it is true (page.wait_for_function would eval inside
    the page, which the console's Content-Security-Policy forbids, rightly)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if page.evaluate(expression):
            return
        time.sleep(0.2)
    raise AssertionError(f"not true within {deadline_s:.0f}s: {expression}")


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/local/install-services chromium",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            yield context.new_page()
        finally:
            context.close()


def test_console_page_in_chromium(kafka_helper: KafkaHelper, start_worker: StartWorker,
                                  browser_page: Any) -> None:
    worker = start_worker(None, None, "--processors", "tests.console.console_processors",
                          partitions=3)
    records = list(EventGenerator(seed=11, bad_share=0.05).records(400))
    kafka_helper.produce(worker.topic, [r.value for r in records])
    expected_reasons = {"processor_failed"} | {
        BAD_KINDS_EXPECTED[r.kind[4:]][0] for r in records
        if r.kind.startswith("bad:") and BAD_KINDS_EXPECTED[r.kind[4:]][1] == "envelope"}
    def settled(d: dict[str, Any]) -> bool:
        group = d["group"]
        return (d["worker"]["totals"]["consumed"] >= 400 and group is not None
                and all(p["lag"] == 0 for p in group["partitions"])
                and group["dlq"][0]["depth"] > 0
                and all(p["lag"] is not None for p in d["worker"]["partitions"]))

    doc = _wait_doc(worker.base, "400 events consumed, committed and seen by the group view",
                    settled)

    page = browser_page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"{r.status} for {r.url}")
            if r.status >= 400 else None)
    page.goto(f"{worker.base}/", wait_until="load")
    _wait_js(page, "document.getElementById('updated').textContent.includes(':')")

    def column(table: str, col: int) -> list[str]:
        return [c.strip() for c in page.locator(
            f"#{table} tbody tr:not(.empty) td:nth-child({col})").all_inner_texts()]

    assert sorted(int(p) for p in column("partitions", 2)) == [0, 1, 2]
    assert set(column("partitions", 1)) == {worker.topic}
    processors = set(column("processors", 1))
    assert {"console_gate", "console_flaky", "loyalty_tiers"} <= processors, processors
    assert processors == {p["name"] for p in doc["worker"]["processors"]}
    reasons = set(column("dead-letters", 1))
    assert expected_reasons <= reasons, (expected_reasons, reasons)
    flaky = doc["worker"]["processors"][[p["name"] for p in doc["worker"]["processors"]]
                                        .index("console_flaky")]
    assert flaky["dead_lettered"] > 0 and flaky["retried"] > 0
    assert set(column("members", 1)) == {m["client_id"] for m in doc["group"]["members"]}
    assert sorted(int(p) for p in column("group-partitions", 2)) == [0, 1, 2]
    assert set(column("group-partitions", 5)) == {"0"}  # lag, as the broker says
    assert column("dlq", 2) == [f"{doc['group']['dlq'][0]['depth']:,}"]
    _wait_js(page, "document.querySelectorAll("
             "'#rate-chart rect[height]:not([height=\"0.0\"])').length > 0")

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "console-wide.png"), full_page=True)

    # New events arrive: the page follows without a reload.
    consumed = page.locator('[data-field="worker.totals.consumed"]').inner_text()
    assert consumed.replace(",", "") == str(_doc(worker.base)["worker"]["totals"]["consumed"])
    kafka_helper.produce(worker.topic, [r.value for r in EventGenerator(seed=12).records(100)])
    _wait_js(page, "Number(document.querySelector('[data-field=\"worker.totals.consumed\"]')"
             ".textContent.replace(/,/g, '')) >= 500", deadline_s=60)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.wait_for_timeout(300)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"
    page.screenshot(path=str(ARTEFACTS / "console-phone.png"), full_page=True)
    assert problems == []
