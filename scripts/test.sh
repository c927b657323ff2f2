#!/usr/bin/env bash
# Set up the venv with the test tools and run the whole test suite (CPU only, tiny generated data).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
EXTRAS=test bash "$root/scripts/setup.sh"
# shellcheck disable=SC1091
. "${VENV:-$root/.venv}/bin/activate"
cd "$root"
ruff check .
python -m pytest "$@"
