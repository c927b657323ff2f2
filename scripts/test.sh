#!/usr/bin/env bash
# Set up the venv with the test tools, then ruff and the test suite (CPU only, tiny generated data).
# Without arguments, in two tiers: the unit tests (-m "not e2e", minutes), then the end-to-end tests that train
# and predict through the nnU-Net CLIs (-m e2e), so a broken unit fails before the long runs start; each tier
# lists its slowest tests. Arguments go to a single pytest run instead, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
EXTRAS=test bash "$root/scripts/setup.sh"
# shellcheck disable=SC1091
. "${VENV:-$root/.venv}/bin/activate"
cd "$root"
ruff check .
if [ "$#" -gt 0 ]; then
  exec python -m pytest "$@"
fi
python -m pytest -m "not e2e" --durations=10
python -m pytest -m e2e --durations=25
