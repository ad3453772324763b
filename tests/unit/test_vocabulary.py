"""One vocabulary: the outcomes and error classes are defined once (`worker.vocabulary`), and
the metrics, docs, dashboard and CLI say the same words — a drift fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

from worker.observability.metrics import KNOWN_DLQ_REASONS, OUTCOMES
from worker.vocabulary import ErrorClass, Outcome

ROOT = Path(__file__).resolve().parents[2]


def _line(path: str, needle: str) -> str:
    [line] = [x for x in (ROOT / path).read_text().splitlines() if needle in x]
    return line


def test_the_metrics_export_exactly_the_vocabulary() -> None:
    assert tuple(Outcome) == OUTCOMES
    assert tuple(ErrorClass) == KNOWN_DLQ_REASONS


def test_the_docs_and_the_dashboard_name_every_outcome_and_no_other() -> None:
    row = _line("docs/observability.md", "| `processor_outcomes_total` |")
    described = set(re.findall(r"`([a-z_]+)`", row.split("|")[4]))
    assert {o.value for o in Outcome} <= described
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/activity-worker.json").read_text())
    panel = next(p for p in dashboard["panels"] if "Per processor and outcome" in
                 p.get("description", ""))
    named = re.search(r"\(([^)]*)\)", panel["description"])
    assert named is not None
    assert [w.strip() for w in named.group(1).split(",")] == [o.value for o in Outcome]


def test_the_dead_letter_docs_name_every_error_class() -> None:
    row = _line("docs/engine.md", "| `worker.error.class` |")
    assert set(re.findall(r"`([a-z_]+)`", row)) - {"worker"} >= {e.value for e in ErrorClass}


def test_dlq_replay_help_lists_every_error_class() -> None:
    import argparse

    from worker.commands import dlq

    parser = argparse.ArgumentParser()
    dlq.add_arguments(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["replay"].format_help().replace("\n", " ")
    text = re.sub(r"\s+", " ", text)
    for error_class in ErrorClass:
        assert error_class.value in text
