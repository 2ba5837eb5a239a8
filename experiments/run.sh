#!/usr/bin/env bash
# The README's main command: sets up ./.venv if needed, then trains and evaluates the default
# experiment (ssd_tiny on the built-in synthetic dataset, CPU) in ./runs/synthetic.
# Extra arguments go to experiments/main.py, e.g. `--config.num_train_steps=100`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$(bash "$root/experiments/ensure_venv.sh")"
cd "$root"
# Back XLA's large buffers with transparent huge pages: on small VMs first-touch page faults
# otherwise dominate memory-bound ops (benchmarks/HISTORY.md). Older glibc ignores the tunable.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}"
exec "$python" -m experiments.main --config=experiments/configs/synthetic.py \
  --workdir="${WORKDIR:-runs/synthetic}" "$@"
