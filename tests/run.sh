#!/usr/bin/env bash
# The README's test command: sets up ./.venv if needed, then runs the test suite.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k priors` or `bash tests/run.sh
# tests/test_priors.py` (files or test ids select those tests; without any, the whole suite:
# pytest.ini). The tests run in one worker process per core (pytest-xdist; `-n 0` runs them in
# this process, e.g. for `--pdb`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$(bash "$root/experiments/ensure_venv.sh")"
cd "$root"
exec "$python" -m pytest -p no:cacheprovider -n auto --dist worksteal "$@"
