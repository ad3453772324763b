"""Compare the packages installed in this interpreter with requirements.lock.

    python lockcheck.py requirements.lock                 # exit 1 unless exactly the locked set
    python lockcheck.py requirements.lock --remove-extra  # first uninstall what the lock lacks
    python lockcheck.py requirements.lock --report        # list what differs, exit 0

pip itself and the project (installed editable) are not in the lock and are left out.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

IGNORED = {"pip", "activity-worker"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and _norm(name) not in IGNORED:
            found[_norm(name)] = dist.version
    return found


def main(argv: list[str]) -> int:
    lock = locked(Path(argv[0]))
    have = installed()
    if "--remove-extra" in argv:
        extra = sorted(set(have) - set(lock))
        if extra:
            print(f"removing packages the lock does not have: {' '.join(extra)}")
            subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extra],
                           check=True)
        return 0
    differ = [
        f"  {name}: locked {lock.get(name, '-')}, installed {have.get(name, '-')}"
        for name in sorted(set(lock) | set(have))
        if lock.get(name) != have.get(name)
    ]
    if "--report" in argv:
        print(f"{len(have)} packages installed; against requirements.lock:")
        print("\n".join(differ) if differ else "  (the same as the lock)")
        return 0
    if differ:
        print("the virtualenv differs from requirements.lock:\n" + "\n".join(differ),
              file=sys.stderr)
        return 1
    pins = ", ".join(f"{n}=={v}" for n, v in sorted(lock.items()))
    print(textwrap.fill(f"installed exactly the {len(lock)} locked versions: {pins}", 100,
                        subsequent_indent="  ", break_on_hyphens=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
