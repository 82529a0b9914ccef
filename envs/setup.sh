#!/usr/bin/env bash
# Make (or update) the project's virtual environment in .venv: pinned CPU requirements, then the
# package itself (editable). With --test, also the test-only tools.
#   bash envs/setup.sh [--test]      then:  . .venv/bin/activate
# On an x86-64 Linux host, torch 2.14.1 is a CUDA build that also runs on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
reqs=(-r envs/requirements-cpu.txt)
[ "${1:-}" = "--test" ] && reqs+=(-r envs/requirements-test.txt)
echo "[setup] installing ${reqs[*]} (the first time takes a few minutes: torch is large)"
.venv/bin/python -m pip install -q --disable-pip-version-check "${reqs[@]}"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "[setup] ready: . .venv/bin/activate  ($(.venv/bin/inferbench --version))"
