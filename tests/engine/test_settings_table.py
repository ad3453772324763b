"""The README's configuration table is the settings table: every run flag, its env var and its
default, nothing else (regenerate it with `python -m worker.settings --markdown`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from worker.settings import OPTIONS, Settings, markdown_table

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- settings table:", "<!-- end of settings table -->"


def _readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "README.md lost its table markers"
    block = text[text.index(BEGIN):text.index(END)]
    return block.split("\n", 1)[1]  # the lines after the opening marker


def _rows(table: str) -> dict[str, tuple[str, str]]:
    """flag -> (env, default) of each row of a table made by markdown_table."""
    rows = {}
    for line in table.splitlines()[2:]:
        flag, env, default = (cell.strip() for cell in line.split(" | ")[:3])
        rows[flag.strip("| `").split(" ")[0]] = (env.strip("`"), default.strip("`"))
    return rows


def test_the_readme_table_is_the_settings_table() -> None:
    readme = _readme_table()
    made = markdown_table()
    missing = set(_rows(made)) - set(_rows(readme))
    extra = set(_rows(readme)) - set(_rows(made))
    assert not missing and not extra, (
        f"README.md's settings table lacks {sorted(missing)} and has {sorted(extra)} too many; "
        "paste the output of `python -m worker.settings --markdown` between its markers")
    assert readme == made, ("README.md's settings table differs from the settings: paste the "
                            "output of `python -m worker.settings --markdown` between its markers")


def test_the_table_has_every_flag_env_var_and_default() -> None:
    rows = _rows(markdown_table())
    defaults = Settings()
    assert len(rows) == len(OPTIONS)
    for opt in OPTIONS:
        env, default = rows[opt.flag]
        assert env == opt.env == "WORKER_" + opt.flag[2:].replace("-", "_").upper()
        value = getattr(defaults, opt.name)
        if value in (None, "", [], {}):
            assert default == "unset", opt.flag
        else:
            shown = ",".join(value) if isinstance(value, list) else str(value)
            assert default == shown, opt.flag
    assert rows["--topic"] == ("WORKER_TOPIC", "customer-activity")
    assert rows["--dlq-window"] == ("WORKER_DLQ_WINDOW", "1000")


def test_python_m_worker_settings_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "worker.settings", "--markdown"], cwd=ROOT,
                         capture_output=True, timeout=60, check=True).stdout.decode()
    assert out == markdown_table()
    assert re.search(r"^\| `--batch-size N` \| `WORKER_BATCH_SIZE` \| `500` \|", out, re.M)
