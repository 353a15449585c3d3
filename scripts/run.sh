#!/usr/bin/env bash
# Install bigramlab into .venv (first time, and again when pyproject.toml changes), then run:
#   scripts/run.sh train [hydra overrides...]   train (python -m bigramlab.train)
#   scripts/run.sh test  [pytest arguments...]  the whole test suite, test files in parallel
#                                               (-m "not slow": the fast part; -n 0: one process)
# Needs only Python >= 3.10 with venv and pip. PYTHON picks the interpreter (default python3).
# To use your own PyTorch build (CUDA or CPU), install it into .venv first; it is kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.installed"

if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    echo "installing bigramlab and its dependencies into $venv (PyTorch alone can take minutes)" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]"
    touch "$stamp"
fi

command="${1:-}"
shift || true
cd "$root"
case "$command" in
    train) exec "$venv/bin/python" -m bigramlab.train "$@" ;;
    # Test files in parallel, each file in one worker (README's commands run in order); at most
    # 4 workers, each a Python with torch and Lightning loaded.
    test) exec "$venv/bin/python" -m pytest -n auto --maxprocesses 4 --dist loadfile "$@" ;;
    *)
        echo "usage: scripts/run.sh train [overrides...] | scripts/run.sh test [pytest args...]" >&2
        exit 2
        ;;
esac
