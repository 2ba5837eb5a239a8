#!/usr/bin/env bash
# Creates ./.venv and installs requirements.txt + this package (editable) into it.
# Idempotent: a stamp holding the hash of requirements.txt and setup.py makes a second call
# return at once; editing either file triggers a re-install. Prints the venv's python path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.ssd_jax_installed"
want="$(cat "$root/requirements.txt" "$root/setup.py" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "ensure_venv: installing into $venv (first run takes a few minutes)" >&2
  [[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements.txt" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root" >&2
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
