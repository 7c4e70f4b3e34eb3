#!/usr/bin/env bash
# Side by side: tideflow against Prefect 3, Prefect 1 and Dask on the same workloads.
#
#   benches/compare/run.sh [compare.py options]     e.g. --repeat 1, --workloads map1k
#
# Needs python3 (3.10 or newer, with its venv module; verified on 3.11, the newest Python
# Prefect 1 was tried on), cargo and network access to PyPI the first time. Creates two
# venvs, each if missing (or if its pinned versions changed):
#   benches/compare/.venv           Prefect 3, prefect-dask and Dask
#                                   (requirements.txt, constraints.txt)
#   benches/compare/.venv-prefect1  Prefect 1 and the same Dask, for the prefect1-dask
#                                   framework (requirements-prefect1.txt,
#                                   constraints-prefect1.txt): Prefect 1 and Prefect 3
#                                   cannot share a venv
# then builds the tideflow `scale` bench and runs benches/compare/compare.py on the first,
# which prints the table and writes benches/compare/results.json. Scratch files (Prefect's
# homes and database, Dask's temporary directory, one log per run) go to
# benches/compare/.work.
#
# Every server binds 127.0.0.1. Not part of CI. A full run (3 repeats) takes hours: each
# Prefect 3 cell over 10,000 tasks (map ×10,000, and ×10,000 of 1 ms) takes 11 to 16
# minutes, on its own task runner or on Dask. --frameworks and --workloads narrow it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

command -v "$python" >/dev/null || { echo "error: $python not found (set PYTHON=...)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "error: cargo not found (https://rustup.rs)" >&2; exit 1; }

# ensure_venv DIR REQUIREMENTS CONSTRAINTS WHAT: (re)create DIR unless its stamp matches.
ensure_venv() {
    local venv="$1" req="$2" cons="$3" what="$4"
    local stamp="$venv/.requirements.sha256" want
    want="$(cat "$req" "$cons" | sha256sum | cut -d' ' -f1)"
    if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        echo "creating $venv ($what from PyPI; a few minutes) ..."
        rm -rf "$venv"
        "$python" -m venv "$venv" || {
            echo "error: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        }
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" -c "$cons"
        echo "$want" >"$stamp"
    fi
    # Keep git from listing the venv (as `python -m venv` does itself from Python 3.13 on).
    [[ -f "$venv/.gitignore" ]] || echo '*' >"$venv/.gitignore"
}

ensure_venv "$here/.venv" "$here/requirements.txt" "$here/constraints.txt" \
    "Prefect 3, prefect-dask and Dask"
ensure_venv "$here/.venv-prefect1" "$here/requirements-prefect1.txt" \
    "$here/constraints-prefect1.txt" "Prefect 1 and Dask"

cd "$here/../.."
exec "$here/.venv/bin/python" "$here/compare.py" "$@"
