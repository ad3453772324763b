"""schemas/ is generated from the structs: it must match the code, and it must accept the real
fixtures and reject what the decoder rejects."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from devtools.generate import EventGenerator
from tests.events.helpers import load_fixtures
from worker.events.export import DEFAULT_DIR, build_schemas, drift, write_schemas
from worker.events.types import FAMILIES, KNOWN_TYPES

REPO = Path(__file__).resolve().parents[2]
REPO_SCHEMAS = REPO / "schemas"


def test_committed_schemas_match_the_code() -> None:
    assert (REPO / DEFAULT_DIR).resolve() == REPO_SCHEMAS.resolve()
    stale = drift(REPO_SCHEMAS)
    assert stale == [], f"run `activity-worker schemas` and commit: {stale}"


def test_drift_is_detected(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    assert drift(tmp_path) == []
    (tmp_path / "families" / "order.json").write_text("{}")
    (tmp_path / "families" / "stale.json").write_text("{}")
    assert drift(tmp_path) == ["families/order.json", "families/stale.json"]
    write_schemas(tmp_path)  # regenerating fixes both
    assert drift(tmp_path) == []


@functools.cache
def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_built()[name])
    return doc


@functools.cache
def _built() -> dict[str, bytes]:
    return build_schemas()


def test_index_lists_every_known_type() -> None:
    index = _load("index.json")["types"]
    assert set(index) == set(KNOWN_TYPES)
    assert [t for t, v in index.items() if not v["typed"]] == [
        "customer.voucher.loyalty_card.points_activated"
    ]


@pytest.mark.parametrize("event", load_fixtures(), ids=lambda e: e["type"])
def test_fixture_is_valid_against_the_exported_schemas(event: dict[str, Any]) -> None:
    _validator("envelope.json", None).validate(event)
    family = _load(f"families/{FAMILIES[event['type']]}.json")
    ref = family["x-event-types"][event["type"]]
    if ref is None:
        return
    validator = _validator(f"families/{FAMILIES[event['type']]}.json", ref)
    validator.validate(event["data"])
    bad = json.loads(json.dumps(event["data"]))
    bad["customer" if "customer" in bad else "holder"]["id"] = 42
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)


@functools.cache
def _validator(name: str, ref: str | None) -> jsonschema.Draft202012Validator:
    """A validator for one file, or for one $def of it; the schema is checked once."""
    schema = dict(_load(name))
    if ref is not None:
        schema["$ref"] = ref
        del schema["anyOf"]
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_envelope_schema_accepts_a_missing_group_id_and_rejects_a_missing_created_at() -> None:
    event = load_fixtures()[0]
    del event["group_id"]
    _validator("envelope.json", None).validate(event)
    del event["created_at"]
    with pytest.raises(jsonschema.ValidationError):
        _validator("envelope.json", None).validate(event)


def test_generated_webhook_deliveries_are_valid_against_webhook_json() -> None:
    gen = EventGenerator(3, webhook_share=1.0)
    deliveries = [json.loads(r.value) for r in gen.records(50)]
    validator = _validator("webhook.json", None)
    for doc in deliveries:
        validator.validate(doc)
    del deliveries[0]["event"]["group_id"]
    validator.validate(deliveries[0])
    del deliveries[0]["event"]["created_at"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(deliveries[0])
