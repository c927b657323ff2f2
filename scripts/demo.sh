#!/usr/bin/env bash
# Set up the venv and run the whole product on built-in synthetic data:
# generate -> convert -> plan/preprocess -> train SliceRes -> 24-view predict -> BraTS evaluation -> report.
# Extra arguments go to `nnunet-ext demo`, e.g. `bash scripts/demo.sh --task men-rt`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
# shellcheck disable=SC1091
. "${VENV:-$root/.venv}/bin/activate"
cd "$root"
nnunet-ext demo --out "${DEMO_OUT:-$root/demo_out}" "$@"
