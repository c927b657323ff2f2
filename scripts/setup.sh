#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install nnunet-ext into it.
#   VENV=path   where the venv lives (default: .venv in the project root)
#   EXTRAS=test also install the test tools
# PyTorch: the CPU build is installed first when no torch is present, so that pip does not pull a
# multi-GB CUDA build on machines without a GPU; set TORCH_SPEC to choose another (e.g. "torch").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" || python -m pip install -q torch
fi
spec="$root"
if [ -n "${EXTRAS:-}" ]; then spec="$root[$EXTRAS]"; fi
python -m pip install -q -e "$spec"
