"""Export JSON Schema files for the envelope and each family's typed `data` into `schemas/`.

Regenerate with `activity-worker schemas` (or `python -m worker.events.export`); the test suite
runs `activity-worker schemas --check`'s logic and fails when the committed files drift.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import msgspec

from worker.events.envelope import Event, WebhookDelivery
from worker.events.models import EventData
from worker.events.registry import DATA_TYPES
from worker.events.types import FAMILIES, UNTYPED_TYPES

DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: Where `activity-worker schemas` writes, relative to the current directory (run it at the top
#: of a checkout; the installed package knows no checkout).
DEFAULT_DIR = Path("schemas")


def _wire_struct(cls: type[msgspec.Struct], name: str) -> type[msgspec.Struct]:
    """`cls` as it is on the wire: `data` as a JSON object, not raw bytes."""
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for f in msgspec.structs.fields(cls):
        if f.type is msgspec.Raw:
            fields.append((f.name, dict[str, Any] | None, None))
        elif f.required:
            fields.append((f.name, f.type, msgspec.NODEFAULT))
        else:
            fields.append((f.name, f.type, f.default))
        rename[f.name] = f.encode_name
    fields = [f for f in fields if f[2] is msgspec.NODEFAULT] + [
        f for f in fields if f[2] is not msgspec.NODEFAULT
    ]
    return msgspec.defstruct(
        name,
        [(n, t) if d is msgspec.NODEFAULT else (n, t, d) for n, t, d in fields],
        rename=rename,
    )


def build_schemas() -> dict[str, bytes]:
    """file name (relative to schemas/) -> file content."""
    files: dict[str, Any] = {}
    envelope = msgspec.json.schema(_wire_struct(Event, "CustomerActivity"))
    envelope = {
        "$schema": DRAFT,
        "title": "CustomerActivity",
        "description": "The CustomerActivity envelope (snake_case on the wire). `type` is an open "
        "string; `data` is described per family in families/*.json.",
        **envelope,
    }
    files["envelope.json"] = envelope
    webhook = msgspec.json.schema(_wire_struct(WebhookDelivery, "WebhookDelivery"))
    files["webhook.json"] = {
        "$schema": DRAFT,
        "title": "WebhookDelivery",
        "description": "A webhook delivery (`whs_…`), accepted as input too: the event's own "
        "fields are under `event`, its `data` at the top level. It decodes to the same event "
        "as the plain envelope.",
        **webhook,
    }

    by_family: dict[str, list[str]] = {}
    for type_, family in FAMILIES.items():
        by_family.setdefault(family, []).append(type_)
    index: dict[str, Any] = {}
    for family in sorted(by_family):
        types = sorted(by_family[family])
        classes: list[type[EventData]] = []
        for t in types:
            cls = DATA_TYPES.get(t)
            if cls is not None and cls not in classes:
                classes.append(cls)
        (refs, components) = msgspec.json.schema_components(classes, ref_template="#/$defs/{name}")
        files[f"families/{family}.json"] = {
            "$schema": DRAFT,
            "title": f"data of the {family} family",
            "x-event-types": {
                t: (f"#/$defs/{DATA_TYPES[t].__name__}" if t in DATA_TYPES else None) for t in types
            },
            "anyOf": list(refs),
            "$defs": dict(sorted(components.items())),
        }
        for t in types:
            cls = DATA_TYPES.get(t)
            index[t] = {
                "family": family,
                "schema": f"families/{family}.json",
                "data": cls.__name__ if cls else None,
                "typed": t not in UNTYPED_TYPES,
            }
    files["index.json"] = {"$comment": "type -> family and typed data struct", "types": index}
    return {
        name: msgspec.json.format(msgspec.json.encode(_clean_descriptions(doc)), indent=2) + b"\n"
        for name, doc in files.items()
    }


def _clean_descriptions(node: Any) -> Any:
    """Every `description` dedented as `inspect.cleandoc` does: msgspec 0.22 kept a docstring's
    indentation and 0.23 removes it, and the committed files must not depend on which ran."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str)
            else _clean_descriptions(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(v) for v in node]
    return node


def write_schemas(directory: Path = DEFAULT_DIR) -> list[str]:
    """Write every schema file (removing stale ones); return the names written."""
    files = build_schemas()
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for stale in drift(directory, files, only_extra=True):
        (directory / stale).unlink()
    return sorted(files)


def drift(
    directory: Path = DEFAULT_DIR,
    files: dict[str, bytes] | None = None,
    *,
    only_extra: bool = False,
) -> list[str]:
    """Names of files in `directory` that differ from the code (missing, changed or extra)."""
    files = build_schemas() if files is None else files
    present = (
        {str(p.relative_to(directory)) for p in directory.rglob("*.json")}
        if directory.exists()
        else set()
    )
    extra = sorted(present - set(files))
    if only_extra:
        return extra
    changed = [
        name
        for name, content in sorted(files.items())
        if not (directory / name).exists() or (directory / name).read_bytes() != content
    ]
    return changed + extra


if __name__ == "__main__":
    names = write_schemas(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
    print(f"wrote {len(names)} schema files")
