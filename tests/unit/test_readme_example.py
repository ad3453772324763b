"""Executes the processor example of README.md as a real module, so it cannot rot."""

from __future__ import annotations

import importlib
import re
import sys
import uuid
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_processor_example_runs(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    name = f"readme_example_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(blocks[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module(name)  # its asserts run at import
    finally:
        sys.modules.pop(name, None)
