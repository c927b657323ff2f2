#!/usr/bin/env bash
# Stock nnU-Net (2d, 3d_fullres; ResEnc M with EXTRA=--resenc) against SliceRes on real glioma cases, on a GPU, with
# `nnunet-ext compare`. Needs CUDA; on the CPU box only DEVICE=cpu dry runs. The accuracy comparison has two datasets:
#
#   realglio-train  6 BRATS 2015 cases, FLAIR + T1c, nnU-Net raw layout (has dataset.json): its files are linked into
#                   WORK/nnUNet_raw/Dataset100_RealGlio
#   brats21-train   6 BraTS 2021 cases, four modalities, the challenge's own layout (no dataset.json), or the
#                   brain-cropped copy benchmarks/crop_brats21.py makes for the trip to the GPU machine: converted
#                   with `nnunet-ext convert brats-2021 --symlink` into WORK/nnUNet_raw/Dataset101_BraTS2021
#
#   bash benchmarks/compare_realglio.sh [DATA] [WORK]
#
#   DATA  either folder (default ../shared/data/realglio-train); it is only read
#   WORK  work folder (default benchmarks/.work_realglio or benchmarks/.work_brats21; keep it out of git)
#
# Environment: MINUTES training budget per method and fold (default 5), FOLDS (default "0": nnU-Net's 5-fold
# split of 6 cases holds out 2 in fold 0, 1 in the others), NP worker processes (default 8), EXTRA further
# `nnunet-ext compare` flags, DEVICE (default cuda; cpu only for a dry run of the pipeline).
# nnUNet_compile defaults to f here: torch.compile's ~80 s warm-up would otherwise
# eat into every method's time budget.
#
# Every step is cached in WORK/compare/manifest.json: when a device session's per-command limit stops the run,
# run the same command again and it resumes (training continues from its latest checkpoint).
# Both datasets store 1 necrosis / non-enhancing core, 2 oedema, 3 enhancing (BraTS 2021's 4 becomes 3 at
# conversion) = the BraTS 2023 convention, hence --rules brats-2023 for both.
# At the end the report (Markdown, HTML, figures, results.json) is copied to benchmarks/compare_realglio/ or
# benchmarks/compare_brats21/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data=$(cd "${1:-$root/../shared/data/realglio-train}" && pwd)
if [ -f "$data/dataset.json" ]; then
  name=realglio id=100
else
  name=brats21 id=101
fi
work=${2:-$root/benchmarks/.work_$name}
export nnUNet_raw=$work/nnUNet_raw
# compare keeps its own preprocessed data and models inside its output folder; these two stay empty
export nnUNet_preprocessed=$work/nnUNet_preprocessed nnUNet_results=$work/nnUNet_results
export nnUNet_compile=${nnUNet_compile:-f} PYTHONUNBUFFERED=1
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"

if [ "$name" = realglio ]; then
  raw=$nnUNet_raw/Dataset100_RealGlio
  mkdir -p "$raw/imagesTr" "$raw/labelsTr"
  for f in "$data"/imagesTr/*.nii.gz; do ln -sfn "$f" "$raw/imagesTr/$(basename "$f")"; done
  for f in "$data"/labelsTr/*.nii.gz; do ln -sfn "$f" "$raw/labelsTr/$(basename "$f")"; done
  ln -sfn "$data/dataset.json" "$raw/dataset.json"
else
  # checks every case, links the images, writes the labels with ET 4 -> 3; a re-run finds everything up to date
  nnunet-ext convert brats-2021 "$data" -d "$id" --symlink -np "${NP:-8}"
fi

# shellcheck disable=SC2086
nnunet-ext compare -d "$id" -f ${FOLDS:-0} --budget-minutes "${MINUTES:-5}" --rules brats-2023 --device "${DEVICE:-cuda}" \
  -np "${NP:-8}" -o "$work/compare" ${EXTRA:-}

dest=$root/benchmarks/compare_$name
mkdir -p "$dest"
cp "$work/compare/report.md" "$work/compare/report.html" "$work/compare/results.json" "$dest/"
rm -rf "$dest/figures" && cp -r "$work/compare/figures" "$dest/figures"
echo "report: $dest/report.md"
