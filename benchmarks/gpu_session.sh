#!/usr/bin/env bash
# Every GPU benchmark of the project in one unattended sequence, for one short lease of a GPU machine:
#
#   1. compare          benchmarks/compare_realglio.sh on the six real BRATS 2015 cases (realglio-train)
#   2. compare_brats21  the same comparison on the six real BraTS 2021 cases, four modalities (the accuracy
#                       comparison's second dataset); needs their cropped copy, see "Data" below
#   3. bench_inference  seconds per BraTS-sized case, 1/6/24 views (tiles and whole slices) vs stock 3d_fullres
#                       and 2d; then view_subsets: tiles vs whole slices and view subsets on the comparisons'
#                       SliceRes checkpoints (Dice per region from saved per-view probabilities)
#   4. bench_training   training slices/s and peak memory, SliceRes vs stock 2d and 3d_fullres
#
# The comparisons go first: they are the longest and the ones whose results matter most if the lease ends early.
#
#   bash benchmarks/gpu_session.sh RESULTS [DATA]
#
#   RESULTS  folder for the JSON records, the readable tables, logs and the comparison reports
#   DATA     the realglio-train folder (default ../shared/data/realglio-train); only read
#
# Data (details and the exact device calls in benchmarks/README.md): a call to the GPU machine carries at most
# 64 MiB, the device kit takes ~34 MB and realglio-train 23 MB, so the BraTS 2021 cases (57 MB, 53 MB when
# cropped to the brain by benchmarks/crop_brats21.py) travel in a second call while the machine is still warm,
# carrying only them (the kit unpacked by the first call stays there). BRATS21 names their folder (default
# data/brats21-crop in the project); while it is missing, stage 2 is skipped with a note, the other stages run,
# and running this script again with the data there does stage 2 (finished stages are not repeated). The
# conversion (`nnunet-ext convert brats-2021`) and nnU-Net's preprocessing happen on the GPU machine.
#
# Environment: MINUTES (training budget per method in the comparisons, default 3), NP (worker processes,
# default 12), WORK (scratch folder, default RESULTS/../gpu_work), BRATS21, and BENCH_TRAINING_ARGS,
# BENCH_INFERENCE_ARGS, COMPARE_SKIP=1 for dry runs elsewhere. A stage that finished (RESULTS/<stage>.done) is
# skipped when the script is run again, so an interrupted session resumes where it stopped; the comparisons
# resume inside themselves. RESULTS/all.done marks a session with every stage done.
# nvidia-smi, when present, samples GPU use every 5 s into RESULTS/gpu_use.csv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
results=$(mkdir -p "$1" && cd "$1" && pwd)
data=$(cd "${2:-$root/../shared/data/realglio-train}" && pwd)
brats21=${BRATS21:-$root/data/brats21-crop}
work=${WORK:-$(dirname "$results")/gpu_work}
mkdir -p "$work"
export PYTHONUNBUFFERED=1 nnUNet_compile=${nnUNet_compile:-f} nnUNet_n_proc_DA=${NP:-12}
if ! command -v nnunet-ext >/dev/null; then  # the device kit puts the project on PYTHONPATH but no launcher on PATH
  mkdir -p "$work/bin"
  printf '#!/bin/sh\nexec python3 -m nnunet_ext.cli "$@"\n' >"$work/bin/nnunet-ext"
  chmod +x "$work/bin/nnunet-ext"
  export PATH="$work/bin:$PATH"
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 >>"$results/gpu_use.csv" &
  trap 'kill $! 2>/dev/null || true' EXIT
fi

stage() {  # stage NAME COMMAND...: run once, log to RESULTS/NAME.log, mark RESULTS/NAME.done
  local name=$1; shift
  [ -f "$results/$name.done" ] && { echo "$name: done earlier"; return 0; }
  echo "$name: started $(date -u +%FT%TZ)"
  local start=$SECONDS
  "$@" 2>&1 | tee "$results/$name.log"
  echo "$((SECONDS - start))" >"$results/$name.done"
  echo "$name: finished in $((SECONDS - start)) s"
}

compare_on() {  # compare_on DATA WORK NAME: the comparison, then its report and logs into RESULTS/compare_NAME
  # (copied right away: the next call brings a fresh copy of the working tree, benchmarks/compare_* included)
  MINUTES=${MINUTES:-3} NP=${NP:-12} bash "$root/benchmarks/compare_realglio.sh" "$1" "$2"
  rm -rf "$results/compare_$3" && cp -r "$root/benchmarks/compare_$3" "$results/"
  cp "$2/compare/logs/"*.log "$results/compare_$3/" 2>/dev/null || true
}

missing=0
if [ -z "${COMPARE_SKIP:-}" ]; then
  stage compare compare_on "$data" "$work/compare" realglio
  if [ -d "$brats21" ]; then
    stage compare_brats21 compare_on "$brats21" "$work/compare_brats21" brats21
  elif [ ! -f "$results/compare_brats21.done" ]; then
    echo "compare_brats21: skipped for now: no BraTS 2021 cases at $brats21; carry them in the next call" \
         "(benchmarks/README.md) and run this script again"
    missing=1
  fi
fi
# shellcheck disable=SC2086
stage bench_inference python3 "$root/benchmarks/bench_inference.py" --repeats 2 --views 1 6 24 \
  --inference tiles whole --out "$results/bench_inference.json" ${BENCH_INFERENCE_ARGS:-}
# whole slices vs tiles and view subsets on the comparison's own SliceRes checkpoints (decides the defaults)
for model in "$work"/compare*/compare/nnUNet_results/*/SliceResTrainer__nnUNetPlans__2d; do
  [ -d "$model" ] || continue
  tag=$(basename "$(dirname "$model")")
  pre=$(cd "$model/../../../nnUNet_preprocessed" && pwd)
  # shellcheck disable=SC2086
  stage "view_subsets_$tag" env nnUNet_preprocessed="$pre" python3 "$root/benchmarks/view_subsets.py" -m "$model" \
    -f ${FOLDS:-0} --device cuda --whole --out "$results/view_subsets_$tag.json"
done
# shellcheck disable=SC2086
stage bench_training python3 "$root/benchmarks/bench_training.py" --raw "$data" --work "$work/training" \
  -np "${NP:-12}" ${BENCH_TRAINING_ARGS:-}
cp "$work/training/bench_training.json" "$results/"
if [ "$missing" = 0 ]; then touch "$results/all.done"; fi
