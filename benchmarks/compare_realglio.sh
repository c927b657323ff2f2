#!/usr/bin/env bash
# Stock nnU-Net (2d, 3d_fullres; ResEnc M with EXTRA=--resenc) against SliceRes on the six real glioma cases of
# ../shared/data/realglio-train, on a GPU, with `nnunet-ext compare`. Needs CUDA; it cannot run on the CPU box.
#
#   bash benchmarks/compare_realglio.sh [DATA] [WORK]
#
#   DATA  the realglio-train folder (nnU-Net raw layout; default ../shared/data/realglio-train). It is only read:
#         its files are linked into WORK/nnUNet_raw/Dataset100_RealGlio.
#   WORK  work folder (default benchmarks/.work_realglio; keep it out of git)
#
# Environment: MINUTES training budget per method and fold (default 5), FOLDS (default "0": nnU-Net's 5-fold
# split of 6 cases holds out 2 in fold 0, 1 in the others), NP worker processes (default 8), EXTRA further
# `nnunet-ext compare` flags, DEVICE (default cuda; cpu only for a dry run of the pipeline).
# nnUNet_compile defaults to f here: torch.compile's ~80 s warm-up would otherwise
# eat into every method's time budget.
#
# Every step is cached in WORK/compare/manifest.json: when a device session's per-command limit stops the run,
# run the same command again and it resumes (training continues from its latest checkpoint).
# Labels 1 necrosis + non-enhancing core, 2 oedema, 3 enhancing = the BraTS 2023 convention, hence --rules brats-2023.
# At the end the report (Markdown, HTML, figures, results.json) is copied to benchmarks/compare_realglio/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=$(cd "${1:-$root/../shared/data/realglio-train}" && pwd)
work=${2:-$root/benchmarks/.work_realglio}
raw=$work/nnUNet_raw/Dataset100_RealGlio
mkdir -p "$raw/imagesTr" "$raw/labelsTr"
for f in "$data"/imagesTr/*.nii.gz; do ln -sfn "$f" "$raw/imagesTr/$(basename "$f")"; done
for f in "$data"/labelsTr/*.nii.gz; do ln -sfn "$f" "$raw/labelsTr/$(basename "$f")"; done
ln -sfn "$data/dataset.json" "$raw/dataset.json"

export nnUNet_raw=$work/nnUNet_raw
# compare keeps its own preprocessed data and models inside its output folder; these two stay empty
export nnUNet_preprocessed=$work/nnUNet_preprocessed nnUNet_results=$work/nnUNet_results
export nnUNet_compile=${nnUNet_compile:-f} PYTHONUNBUFFERED=1
mkdir -p "$nnUNet_preprocessed" "$nnUNet_results"

# shellcheck disable=SC2086
nnunet-ext compare -d 100 -f ${FOLDS:-0} --budget-minutes "${MINUTES:-5}" --rules brats-2023 --device "${DEVICE:-cuda}" \
  -np "${NP:-8}" -o "$work/compare" ${EXTRA:-}

dest=$root/benchmarks/compare_realglio
mkdir -p "$dest"
cp "$work/compare/report.md" "$work/compare/report.html" "$work/compare/results.json" "$dest/"
rm -rf "$dest/figures" && cp -r "$work/compare/figures" "$dest/figures"
echo "report: $dest/report.md"
