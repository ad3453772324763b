"""The runtime part of requirements.lock, for the container image.

requirements.lock pins every runtime, dev and build dependency in one file. An image needs only
what `activity-worker` itself requires (no pytest, mypy, ruff, uv): this walks the project's
`Requires-Dist` in the checkout's virtualenv (installed from that same lock), extras included
(`psycopg[binary]` → psycopg-binary), and copies those packages' entries from the lock verbatim,
hashes and all, so the image installs with `pip --require-hashes` exactly what the tests ran on.

    python -m devtools.runtime_lock requirements.lock runtime      # the image's packages
    python -m devtools.runtime_lock requirements.lock build        # the build backend
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "activity-worker"
BUILD_BACKEND = ("setuptools", "wheel")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==")


def lock_entries(text: str) -> dict[str, str]:
    """Each pinned package's block of lines (the pin, its hashes, its `# via` comments)."""
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            current = entries.setdefault(canonicalize_name(match.group(1)), [])
        elif not line.startswith((" ", "\t")):
            current = None
        if current is not None:
            current.append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in entries.items()}


def runtime_closure(root: str = PROJECT) -> set[str]:
    """The names of every distribution `root` needs at run time (not its extras), as installed."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        requires = metadata.requires(name) or []
        seen.add(canonicalize_name(name))
        for text in requires:
            req = Requirement(text)
            wanted = req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in (extras or {""}))
            key = canonicalize_name(req.name)
            if wanted and (key not in seen or req.extras):
                todo.append((req.name, frozenset(req.extras)))
    seen.discard(canonicalize_name(root))
    return seen


def subset(lock_text: str, names: Iterable[str]) -> str:
    """The lock's entries for `names`; an error naming what the lock lacks."""
    entries = lock_entries(lock_text)
    wanted = sorted({canonicalize_name(n) for n in names})
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise SystemExit(f"requirements.lock has no pin for {', '.join(missing)}: "
                         "run ./scripts/lock and reinstall the virtualenv")
    header = "# The runtime part of requirements.lock (devtools/runtime_lock.py); do not edit.\n"
    return header + "".join(entries[n] for n in wanted)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("runtime", "build"):
        print(__doc__, file=sys.stderr)
        return 2
    text = Path(argv[0]).read_text()
    names = runtime_closure() if argv[1] == "runtime" else set(BUILD_BACKEND)
    sys.stdout.write(subset(text, names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
