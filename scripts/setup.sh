#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install nnunet-ext into it.
#   VENV=path   where the venv lives (default: .venv in the project root)
#   EXTRAS=test also install the test tools
# PyTorch comes in through nnunetv2's requirements; install the build you want (CPU/CUDA) into the
# venv first if pip's default is not it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
spec="$root"
if [ -n "${EXTRAS:-}" ]; then spec="$root[$EXTRAS]"; fi
python -m pip install -q -e "$spec"
