# Sourced by the scripts in scripts/: the project's virtualenv, installed from requirements.lock.
#
#   ensure_venv        # creates .venv (or $VENV) and installs exactly the locked versions;
#                      # sets PY to its python. With LATEST=1 it uses .venv-latest instead and
#                      # installs the newest versions pyproject.toml allows, ignoring the lock.
#
# The install is skipped when the virtualenv already holds what requirements.lock and
# pyproject.toml say (a stamp of both is kept in the virtualenv).

_venv_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

ensure_venv() {
  local base=${PYTHON:-python3}
  if [ -n "${LATEST:-}" ]; then
    VENV=${VENV:-$_venv_root/.venv-latest}
  else
    VENV=${VENV:-$_venv_root/.venv}
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating the virtualenv $VENV (from $("$base" --version 2>&1))"
    if ! "$base" -m venv "$VENV"; then
      echo "could not create a virtualenv with $base: install python3-venv (Debian:" \
        "apt-get install python3-venv) or set PYTHON to a Python >= 3.11 that has venv" >&2
      return 2
    fi
  fi
  PY=$VENV/bin/python
  # The checkout's own top level (devtools/: the demo generator and the local broker launcher,
  # which the package does not ship) is importable from this virtualenv, from any directory.
  "$PY" -c 'import sys, sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()["purelib"],
    "activity-worker-checkout.pth").write_text(sys.argv[1] + "\n")' "$_venv_root"
  local pip=("$PY" -m pip --disable-pip-version-check)
  if [ -n "${LATEST:-}" ]; then
    echo "LATEST=1: installing the newest versions pyproject.toml allows (the lock is ignored)"
    "${pip[@]}" install -q --upgrade --upgrade-strategy eager -e "$_venv_root[dev]"
    "$PY" "$_venv_root/scripts/lib/lockcheck.py" "$_venv_root/requirements.lock" --report
    return 0
  fi
  local stamp
  stamp=$(cat "$_venv_root/requirements.lock" "$_venv_root/pyproject.toml" | sha256sum | cut -c1-64)
  if [ "$(cat "$VENV/.lock-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "installing the locked versions from requirements.lock into $VENV"
    "${pip[@]}" install -q --require-hashes --no-deps -r "$_venv_root/requirements.lock"
    "${pip[@]}" install -q --no-deps --no-build-isolation -e "$_venv_root"
    "$PY" "$_venv_root/scripts/lib/lockcheck.py" "$_venv_root/requirements.lock" --remove-extra
    echo "$stamp" >"$VENV/.lock-stamp"
  fi
  "$PY" "$_venv_root/scripts/lib/lockcheck.py" "$_venv_root/requirements.lock"
}
