#!/usr/bin/env bash
# Build the wheel, install it (not editable) into a fresh venv and plan a tiny dataset with a shipped preset:
# catches package data (presets, trainer discovery) that only an editable install would find.
# The fresh venv borrows the dependencies of $VENV (one line in a .pth file) instead of downloading them
# again; $VENV's own editable nnunet_ext is not visible there (its finder is a .pth file that is not run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps_venv=${VENV:-$root/.venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# build from a copy of the tracked and unignored files, so no build/ or *.egg-info lands in the source tree
mkdir "$work/source"
(cd "$root" && git ls-files -co --exclude-standard | while read -r f; do [ -e "$f" ] && echo "$f"; done | tar -T - -cf -) | tar -xf - -C "$work/source"
"$deps_venv/bin/python" -m pip wheel -q --no-deps -w "$work/dist" "$work/source"
python3 -m venv "$work/venv"
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$deps_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/borrowed_deps.pth"
"$work/venv/bin/python" -m pip install -q --no-deps "$work"/dist/nnunet_ext-*.whl
cd "$work"  # outside the source tree, so only the installed wheel can be imported
export PATH="$work/venv/bin:$PATH" nnUNet_raw="$work/raw" nnUNet_preprocessed="$work/pre" nnUNet_results="$work/res"
python -c 'import nnunet_ext, sys; sys.exit(0 if "site-packages" in nnunet_ext.__file__ else 1)'
nnunet-ext demo-data "$work/src" --task gli -n 3 --shape 32 32 24 -np 1 > /dev/null 2>&1
nnunet-ext convert brats-gli "$work/src" -d 990 -np 1 > /dev/null 2>&1
nnunet-ext plan -d 990 --preset brats_gli -c 2d -np 1 > "$work/plan.log" 2>&1 || { cat "$work/plan.log"; exit 1; }
grep -q '"sliceres"' "$nnUNet_preprocessed"/Dataset990_*/nnUNetPlans.json
echo "wheel install: nnunet-ext plan --preset brats_gli OK"
