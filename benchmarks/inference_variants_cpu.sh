#!/usr/bin/env bash
# CPU evidence for inference defaults: short quarter-width SliceRes models on all five folds of both real datasets
# (realglio-train: 6 BRATS 2015 cases, FLAIR + T1c; brats21-train: 6 BraTS 2021 cases, four modalities), then
# every fold's held-out cases predicted with each inference variant on the same checkpoints and scored with the
# BraTS rules by benchmarks/inference_variants.py. Models are weak (a few hundred optimiser steps on two CPU
# cores): the record measures how inference variants differ on the same weights, not how good SliceRes is.
#
#   bash benchmarks/inference_variants_cpu.sh WORK OUT_FOLDER
#
# Environment: EPOCHS (default 4) x ITERS (default 75) per fold, FOLDS (default "0 1 2 3 4"), VARIANTS (default:
# tiles and whole slices, each with the 6-view fast ensemble to keep CPU time affordable). Every step is skipped
# when its output exists, so a re-run resumes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mkdir -p "$1" && cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
shared=${SHARED:-$root/../shared/data}
export nnUNet_raw=$work/raw nnUNet_preprocessed=$work/pre nnUNet_results=$work/res
export nnUNet_compile=f nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1} nnUNet_def_n_proc=1 OMP_WAIT_POLICY=PASSIVE
export PYTHONUNBUFFERED=1
eval "$(nnunet-ext env)"
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
folds=${FOLDS:-0 1 2 3 4}
read -r -a variants <<< "${VARIANTS:-tiles=--inference,tiles,--transforms,fast whole=--inference,whole,--transforms,fast}"
variant_args=()
for v in "${variants[@]}"; do variant_args+=(--variant "$v"); done

prepare() {  # id name
  local id=$1 name=$2
  if [ "$name" = RealGlio ]; then
    local raw=$nnUNet_raw/Dataset${id}_$name
    mkdir -p "$raw/imagesTr" "$raw/labelsTr"
    for f in "$shared"/realglio-train/imagesTr/*.nii.gz; do ln -sfn "$f" "$raw/imagesTr/$(basename "$f")"; done
    for f in "$shared"/realglio-train/labelsTr/*.nii.gz; do ln -sfn "$f" "$raw/labelsTr/$(basename "$f")"; done
    cp "$shared/realglio-train/dataset.json" "$raw/dataset.json"
  else
    nnunet-ext convert brats-2021 "$shared/brats21-train" -d "$id" --symlink
  fi
  [ -f "$nnUNet_preprocessed/Dataset${id}_$name/nnUNetPlans.json" ] || nnunet-ext plan -d "$id" -c 2d -np 1 \
    --set 'network.kwargs.widths=[8,16,32,64]' --set seed=0
}

train() {  # id name fold
  local model=$nnUNet_results/Dataset${1}_$2/SliceResTrainer__nnUNetPlans__2d/fold_$3
  [ -f "$model/checkpoint_final.pth" ] && return
  local resume=()
  [ -f "$model/checkpoint_latest.pth" ] && resume=(--c)
  NNUNET_EXT_EPOCHS=${EPOCHS:-4} NNUNET_EXT_ITERATIONS=${ITERS:-75} NNUNET_EXT_VAL_ITERATIONS=5 \
    nnUNetv2_train "$1" 2d "$3" -tr SliceResTrainer -device cpu "${resume[@]}"
}

for dataset in "611 RealGlio" "612 BraTS2021"; do
  read -r id name <<< "$dataset"
  prepare "$id" "$name"
  for fold in $folds; do train "$id" "$name" "$fold"; done
  # shellcheck disable=SC2086
  python "$root/benchmarks/inference_variants.py" -d "$id" --raw "$nnUNet_raw/Dataset${id}_$name" -f $folds \
    "${variant_args[@]}" --rules brats-2023 --work "$work/variants_$name" --out "$out/inference_variants_$name.json" \
    | tee "$out/inference_variants_$name.txt"
done
