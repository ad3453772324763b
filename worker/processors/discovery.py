"""Finding processors: built-ins, the `activity_worker.processors` entry points, named modules.

Load order, which is also the fan-out order (see worker.processing.routing):
1. the built-in processors (`BUILTIN_MODULES`), unless turned off;
2. entry points of the group `activity_worker.processors`, sorted by entry-point name, so a
   separate package can ship processors: in its pyproject.toml,
   `[project.entry-points."activity_worker.processors"] loyalty = "my_pkg.processors"`;
3. the modules named by `--processors` / `WORKER_PROCESSORS`, in the order given.
Within one module, processors keep their registration (definition) order.

A processor reached twice (e.g. a module both named and shipped as an entry point) is loaded
once; two different processors with one name stop the worker with ConfigError.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from worker.errors import ConfigError
from worker.ledger.base import Ledger
from worker.processors import api
from worker.processors.api import Processor

ENTRY_POINT_GROUP = "activity_worker.processors"
ENV_MODULES = "WORKER_PROCESSORS"
ENV_BUILTINS = "WORKER_BUILTIN_PROCESSORS"

BUILTIN_MODULES: tuple[str, ...] = (
    "worker.processors.builtin.loyalty_tiers",
    "worker.processors.builtin.loyalty_points",
    "worker.processors.builtin.redemptions",
    "worker.processors.builtin.messaging",
)


def modules_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """The comma-separated module names in WORKER_PROCESSORS (blanks ignored)."""
    raw = (os.environ if environ is None else environ).get(ENV_MODULES, "")
    return [m.strip() for m in raw.split(",") if m.strip()]


def builtins_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """WORKER_BUILTIN_PROCESSORS=false|0|no|off turns the built-in processors off."""
    raw = (os.environ if environ is None else environ).get(ENV_BUILTINS, "true").strip().lower()
    if raw in ("1", "true", "yes", "on", ""):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{ENV_BUILTINS}={raw!r} is not a boolean; set it to true or false.")


def _import_source(module_name: str, origin: str) -> list[Processor]:
    """Import a module and return the processors it registered, in registration order.

    A module imported before (e.g. by a test, or by another source) registers nothing new, so
    its processors are then found by their defining module (the module or its submodules).
    """
    before = len(api._REGISTERED)
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"processor module {module_name!r} ({origin}) cannot be imported: "
                              "check the name and that its package is installed.") from None
        raise ConfigError(f"processor module {module_name!r} ({origin}) failed to import: "
                          f"{exc}; install the missing package.") from exc
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"processor module {module_name!r} ({origin}) raised while importing: "
                          f"{type(exc).__name__}: {exc}; fix the module.") from exc
    new = api._REGISTERED[before:]
    if new:
        return list(new)
    return [p for p in api._REGISTERED
            if p.module == module_name or p.module.startswith(module_name + ".")]


def _entry_point_sources() -> list[tuple[str, str, Any]]:
    """(module name, origin, entry point) per entry point of our group, sorted by name."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return [(ep.module, f"entry point {ep.name!r} of {_dist_name(ep)}", ep)
            for ep in sorted(found, key=lambda e: e.name)]


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else "an installed package"


def _from_entry_point(ep: importlib.metadata.EntryPoint, module_name: str,
                      origin: str) -> list[Processor]:
    procs = _import_source(module_name, origin)
    if ep.attr:  # `my_pkg.mod:obj`: obj may be a Processor or an iterable of them
        try:
            obj = ep.load()
        except Exception as exc:
            raise ConfigError(f"{origin}: cannot load {ep.value!r}: {exc}; fix the entry "
                              "point.") from exc
        if isinstance(obj, Processor):
            procs.append(obj)
        elif isinstance(obj, (list, tuple)) and all(isinstance(o, Processor) for o in obj):
            procs.extend(obj)
        # else: a decorated function; importing its module registered it already.
    return procs


def load_processors(modules: Sequence[str] = (), entry_points: bool = True,
                    builtins: bool = True) -> list[Processor]:
    """Import processor sources and return their processors in fan-out order.

    Raises ConfigError for a module that cannot be imported, a duplicate processor name
    (naming both modules), or an invalid pattern (naming the processor and the pattern).
    """
    from worker.processing.routing import compile_pattern  # routing imports this package

    sources: list[tuple[str, str, Any]] = []
    if builtins:
        sources += [(m, "built-in", None) for m in BUILTIN_MODULES]
    if entry_points:
        sources += _entry_point_sources()
    sources += [(m, "--processors", None) for m in modules]

    loaded: list[Processor] = []
    seen_ids: set[int] = set()
    by_name: dict[str, Processor] = {}
    for module_name, origin, ep in sources:
        procs = (_from_entry_point(ep, module_name, origin) if ep is not None
                 else _import_source(module_name, origin))
        for proc in procs:
            if id(proc) in seen_ids:
                continue
            other = by_name.get(proc.name)
            if other is not None:
                raise ConfigError(
                    f"two processors are named {proc.name!r}: one in module {other.module!r}, "
                    f"one in module {proc.module!r}; rename one with @processor(name=...).")
            for pattern in proc.patterns:
                compile_pattern(pattern, proc.name)
            seen_ids.add(id(proc))
            by_name[proc.name] = proc
            loaded.append(proc)
    return loaded


def apply_settings(processors: Iterable[Processor],
                   overrides: Mapping[str, Mapping[str, Any]]) -> list[Processor]:
    """Merge per-processor settings from config over the decorator's defaults.

    `overrides` maps processor name -> settings; a name that is not loaded is a ConfigError
    (a typo would otherwise be ignored silently).
    """
    procs = list(processors)
    names = {p.name for p in procs}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"settings given for unknown processor(s) {', '.join(unknown)}; "
                          f"loaded processors are: {', '.join(sorted(names)) or 'none'}.")
    return [replace(p, settings={**p.settings, **overrides[p.name]}) if p.name in overrides
            else p for p in procs]



def add_discovery_arguments(parser: argparse.ArgumentParser) -> None:
    """`--processors MODULE` (repeatable) and `--no-builtin-processors`, for every command
    that loads processors."""
    parser.add_argument(
        "--processors", action="append", default=[], metavar="MODULE",
        help="import processors from this Python module (repeatable); added to the modules in "
        f"${ENV_MODULES} (comma-separated) and the '{ENTRY_POINT_GROUP}' entry points")
    parser.add_argument(
        "--no-builtin-processors", dest="builtin_processors", action="store_false",
        default=None,
        help=f"do not load the built-in processors (also ${ENV_BUILTINS}=false)")


def load_from_args(args: argparse.Namespace) -> list[Processor]:
    """load_processors() for the modules and switches of add_discovery_arguments + env."""
    modules = modules_from_env() + [m for m in args.processors if m not in modules_from_env()]
    builtins = args.builtin_processors
    if builtins is None:
        builtins = builtins_from_env()
    return load_processors(modules, entry_points=True, builtins=builtins)


def run_setup(processors: Sequence[Processor], ledger: Ledger) -> None:
    """Create the processors' read-model tables: each `setup` hook runs once, in order, in one
    ledger transaction that is then committed. On a ledger without SQL (Redis, memory), a
    processor that `requires_transaction` is a ConfigError; other setup hooks are skipped."""
    session = ledger.session()
    try:
        conn = session.transaction
        if conn is None:
            needy = [p.name for p in processors if p.requires_transaction]
            if needy:
                raise ConfigError(
                    f"processor(s) {', '.join(needy)} write read models and need a SQL ledger, "
                    f"but the ledger is {ledger.url.split(':', 1)[0]}://; use sqlite:///path.db "
                    "or postgresql://..., or turn the built-ins off with "
                    f"{ENV_BUILTINS}=false.")
            session.rollback()
            return
        for proc in processors:
            if proc.setup is not None:
                try:
                    proc.setup(conn)
                except Exception as exc:
                    raise ConfigError(f"processor {proc.name!r}: its setup failed: "
                                      f"{type(exc).__name__}: {exc}; fix the setup hook or "
                                      "the database.") from exc
        session.commit()
    except BaseException:
        session.rollback()
        raise
