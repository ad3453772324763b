"""Discovery: built-ins, --processors modules, env, entry points, duplicates, bad patterns.

Each test writes real modules (and, for entry points, a real dist-info folder) under tmp_path
and puts it on sys.path, with unique module names so the import cache never leaks between tests.
"""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.processors.discovery import (
    BUILTIN_MODULES,
    apply_settings,
    builtins_from_env,
    load_processors,
    modules_from_env,
)

BUILTIN_NAMES = ["loyalty_tiers", "loyalty_points", "redemptions", "messaging_delivery"]


def write_module(root: Path, body: str, name: str | None = None) -> str:
    name = name or f"procmod_{uuid.uuid4().hex[:10]}"
    (root / f"{name}.py").write_text(
        "from worker.processors import processor\n\n" + textwrap.dedent(body))
    return name


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_are_loaded_by_default_in_a_fixed_order() -> None:
    procs = load_processors(entry_points=False)
    assert [p.name for p in procs] == BUILTIN_NAMES
    assert [p.module for p in procs] == list(BUILTIN_MODULES)
    assert all(p.setup is not None and p.requires_transaction for p in procs)
    assert load_processors(builtins=False, entry_points=False) == []


def test_named_modules_load_after_builtins_in_definition_order(root: Path) -> None:
    mod = write_module(root, """
        @processor("customer.created", name="second_b")
        def b(event, ctx): pass

        @processor("customer.updated", name="first_a")
        def a(event, ctx): pass
    """)
    procs = load_processors([mod], entry_points=False)
    assert [p.name for p in procs] == [*BUILTIN_NAMES, "second_b", "first_a"]
    # Loading again (module already imported) finds the same processors.
    assert [p.name for p in load_processors([mod], entry_points=False, builtins=False)] == [
        "second_b", "first_a"]


def test_duplicate_names_fail_naming_both_modules(root: Path) -> None:
    one = write_module(root, """
        @processor("customer.created", name="sync")
        def a(event, ctx): pass
    """)
    two = write_module(root, """
        @processor("customer.updated", name="sync")
        def b(event, ctx): pass
    """)
    with pytest.raises(ConfigError) as info:
        load_processors([one, two], entry_points=False, builtins=False)
    assert "'sync'" in str(info.value)
    assert one in str(info.value)
    assert two in str(info.value)


def test_a_name_clashing_with_a_builtin_fails(root: Path) -> None:
    mod = write_module(root, """
        @processor("customer.created", name="redemptions")
        def a(event, ctx): pass
    """)
    with pytest.raises(ConfigError, match=r"worker\.processors\.builtin\.redemptions"):
        load_processors([mod], entry_points=False)


def test_invalid_pattern_fails_naming_processor_and_pattern(root: Path) -> None:
    mod = write_module(root, """
        @processor("customer..created", name="typo")
        def a(event, ctx): pass
    """)
    with pytest.raises(ConfigError, match=r"processor 'typo'.*'customer\.\.created'"):
        load_processors([mod], entry_points=False, builtins=False)


def test_missing_and_broken_modules_fail_clearly(root: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be imported: check the name"):
        load_processors(["no_such_module_here_x1"], entry_points=False, builtins=False)
    broken = write_module(root, "import no_such_dependency_x2\n")
    with pytest.raises(ConfigError, match="no_such_dependency_x2"):
        load_processors([broken], entry_points=False, builtins=False)
    raising = write_module(root, "raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="RuntimeError: boom"):
        load_processors([raising], entry_points=False, builtins=False)


def test_entry_points_are_discovered_and_deduplicated(root: Path) -> None:
    mod = write_module(root, """
        @processor("customer.loyalty.tier.*", name="ep_tiers")
        def tiers(event, ctx): pass
    """)
    dist = root / f"ep_dist_{uuid.uuid4().hex[:8]}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.name[:-15]}\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[activity_worker.processors]\nmine = {mod}\n")
    procs = load_processors(builtins=False)
    assert [p.name for p in procs] == ["ep_tiers"]
    # Also named on the command line: still loaded once.
    assert [p.name for p in load_processors([mod], builtins=False)] == ["ep_tiers"]


def test_environment_settings() -> None:
    assert modules_from_env({"WORKER_PROCESSORS": " a.b , c ,,"}) == ["a.b", "c"]
    assert modules_from_env({}) == []
    assert builtins_from_env({}) is True
    assert builtins_from_env({"WORKER_BUILTIN_PROCESSORS": "false"}) is False
    with pytest.raises(ConfigError, match="true or false"):
        builtins_from_env({"WORKER_BUILTIN_PROCESSORS": "maybe"})


def test_apply_settings_merges_and_rejects_unknown_names() -> None:
    procs = load_processors(entry_points=False)
    merged = apply_settings(procs, {"redemptions": {"top": 3}})
    assert next(p for p in merged if p.name == "redemptions").settings == {"top": 3}
    with pytest.raises(ConfigError, match="redemption_typo"):
        apply_settings(procs, {"redemption_typo": {}})
