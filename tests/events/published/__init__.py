"""Voucherify's own published examples, read from a local git copy of the public repository
`voucherifyio/voucherify-openapi` at test time (opt-in: set VOUCHERIFY_OPENAPI_GIT to its git
directory; `git clone --bare` of it, or any checkout's `.git`).

They are not copied into this repository: this workplace allows no material from other
repositories to be committed. Each example keeps its provenance (path, commit, place in the
file) so a failure names exactly what Voucherify published.

Sources:
- `documentation/openapi-events/events-customer.json` and `reference/OpenAPIWebhooks.json`:
  per-type `data` examples (`webhooks.<EVENT>.post.requestBody...examples`), customer types;
- `documentation/api-reference/distribution-webhooks.mdx`: webhook deliveries (JSON code
  blocks with an `event` object);
- the whole history (`extract_history.py`): every customer activity (an `evcus_` id and a
  `customer.` type) and webhook delivery (a `whs_` id and an `event` object) ever published,
  in JSON files, in Markdown and in description strings.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_SOURCES = ("documentation/openapi-events/events-customer.json",
                "reference/OpenAPIWebhooks.json")
DELIVERY_SOURCES = ("documentation/api-reference/distribution-webhooks.mdx",)


@dataclass(frozen=True)
class Example:
    kind: str  # "data" (a type's data object), "delivery" (webhook), "event" (an activity)
    type: str
    value: Any
    path: str
    commit: str
    place: str  # a JSON pointer, or "line N" in a text file

    @property
    def source(self) -> str:
        return f"{self.path}@{self.commit[:10]} {self.place}"


def _git(git_dir: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True,
                          text=True, check=True, timeout=300).stdout


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def data_examples(git_dir: Path, commit: str) -> Iterator[Example]:
    for path in DATA_SOURCES:
        doc = json.loads(_git(git_dir, "show", f"{commit}:{path}"))
        for hook, item in doc.get("webhooks", {}).items():
            type_ = hook.lower().removeprefix("events.")
            if not type_.startswith("customer."):
                continue
            for method, op in item.items():
                content = op.get("requestBody", {}).get("content", {})
                examples = content.get("application/json", {}).get("examples", {})
                for name, ex in examples.items():
                    yield Example("data", type_, ex.get("value"), path, commit, _pointer(
                        "webhooks", hook, method, "requestBody", "content", "application/json",
                        "examples", name, "value"))


_FENCE = re.compile(r"^```(?:json|JSON)\b.*$")


def delivery_examples(git_dir: Path, commit: str) -> Iterator[Example]:
    for path in DELIVERY_SOURCES:
        lines = _git(git_dir, "show", f"{commit}:{path}").splitlines()
        start = None
        for i, line in enumerate(lines):
            if start is None and _FENCE.match(line.strip()):
                start = i
            elif start is not None and line.strip() == "```":
                block, first, start = "\n".join(lines[start + 1 : i]), start + 1, None
                try:
                    value = json.loads(block)
                except ValueError:
                    continue  # a payload template ({{customer.name}}), not a delivery
                if isinstance(value, dict) and isinstance(value.get("event"), dict):
                    yield Example("delivery", str(value["event"].get("type")), value, path,
                                  commit, f"line {first + 1}")


def history_examples(git_dir: Path, out_dir: Path) -> Iterator[Example]:
    """Every distinct customer activity (`evcus_` id, `customer.` type) and webhook delivery
    in the whole history, each at the oldest commit that holds it (`extract_history.py`:
    robust to the large blobs a partial mirror lacks)."""
    script = Path(__file__).with_name("extract_history.py")
    subprocess.run([sys.executable, str(script), str(git_dir), "--out", str(out_dir)],
                   check=True, capture_output=True, timeout=900)
    for name, kind in (("activities.json", "event"), ("webhooks.json", "delivery")):
        for item in json.loads((out_dir / name).read_text()):
            src, value = item["source"], item["value"]
            place = src.get("pointer") or f"line {src.get('line')}"
            if "sub_pointer" in src:
                place += f" (string line {src.get('string_line')}, {src['sub_pointer']})"
            event = value.get("event") if kind == "delivery" else value
            type_ = event.get("type") if isinstance(event, dict) else None
            yield Example(kind, str(type_), value, src["path"], src["commit"], place)


def all_examples(git_dir: Path, out_dir: Path) -> list[Example]:
    head = _git(git_dir, "rev-parse", "HEAD").strip()
    return [*data_examples(git_dir, head), *delivery_examples(git_dir, head),
            *history_examples(git_dir, out_dir)]
