"""The engine's GC tuning is scoped to run(): it must leave the process as it found it."""

from __future__ import annotations

import gc

from worker.engine.lifecycle import tune_gc
from worker.engine.loop import EngineConfig


def test_tune_gc_raises_gen0_threshold_and_restores_it() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    restore = tune_gc(20_000)
    try:
        assert gc.get_threshold() == (max(20_000, before[0]), *before[1:])
        assert gc.get_freeze_count() >= frozen_before
    finally:
        restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_tune_gc_none_leaves_the_gc_alone() -> None:
    before = gc.get_threshold()
    restore = tune_gc(None)
    assert gc.get_threshold() == before
    restore()
    assert gc.get_threshold() == before


def test_engine_tunes_gc_by_default() -> None:
    assert EngineConfig(topics=["t"]).gc_gen0_threshold == 20_000
