"""The shape of the package: no import cycles in `worker/` (counting imports made inside
functions too: deferring an import hides a cycle, it does not remove it), and confluent-kafka
imported only by `worker/kafka/`; the engine and the processing half know neither each other
nor the client."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "worker"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_in_the_package() -> None:
    graph = _graph()
    # a package's __init__ re-exporting its submodules is not a cycle of design
    for name in list(graph):
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    assert _cycles(graph) == []


def test_confluent_kafka_is_imported_only_by_the_kafka_package() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "kafka":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "confluent_kafka" for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_engine_is_client_free_and_knows_no_adapter_or_processing() -> None:
    """worker/engine/ depends on ports (the consumer port, the dead-letter sink, the batch
    handler and its window), never on confluent-kafka, the Kafka adapters or the pipeline."""
    offenders = {}
    for path in (PACKAGE / "engine").rglob("*.py"):
        bad = sorted(m for m in _imports(path)
                     if m.split(".")[0] == "confluent_kafka"
                     or m.startswith(("worker.kafka", "worker.processing", "worker.ledger",
                                      "worker.processors")))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_the_processing_half_knows_no_kafka_client_or_engine() -> None:
    offenders = {}
    for path in (PACKAGE / "processing").rglob("*.py"):
        bad = sorted(m for m in _imports(path)
                     if m.split(".")[0] == "confluent_kafka"
                     or m.startswith(("worker.kafka", "worker.engine")))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}
