#!/usr/bin/env bash
# Side by side: tideflow against Prefect 3 and Dask on the same three workloads.
#
#   benches/compare/run.sh [compare.py options]     e.g. --repeat 1, --workloads map1k
#
# Needs python3 (3.10 or newer, with its venv module), cargo and network access to PyPI
# the first time. Creates benches/compare/.venv if missing (or if the pinned versions in
# requirements.txt / constraints.txt changed), installs Prefect and Dask into it, builds
# the tideflow `scale` bench and runs benches/compare/compare.py, which prints the table
# and writes benches/compare/results.json. Scratch files (Prefect's home and database,
# Dask's temporary directory, one log per run) go to benches/compare/.work.
#
# Every server binds 127.0.0.1. Not part of CI: a full run takes about 10 minutes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

command -v "$python" >/dev/null || { echo "error: $python not found (set PYTHON=...)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "error: cargo not found (https://rustup.rs)" >&2; exit 1; }

stamp="$venv/.requirements.sha256"
want="$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "creating $venv (Prefect and Dask from PyPI; a few minutes) ..."
    rm -rf "$venv"
    "$python" -m venv "$venv" || {
        echo "error: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    }
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/requirements.txt" -c "$here/constraints.txt"
    echo "$want" >"$stamp"
fi

cd "$here/../.."
exec "$venv/bin/python" "$here/compare.py" "$@"
