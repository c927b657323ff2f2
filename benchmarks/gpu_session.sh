#!/usr/bin/env bash
# Every GPU benchmark of the project in one unattended sequence, for one short lease of a GPU machine:
#
#   1. benchmarks/compare_realglio.sh `nnunet-ext compare` on the six real glioma cases, same training budget
#   2. benchmarks/bench_inference.py  seconds per BraTS-sized case, 1/8/24 views vs stock 3d_fullres and 2d
#   3. benchmarks/bench_training.py   training slices/s and peak memory, SliceRes vs stock 2d and 3d_fullres
#
# The comparison goes first: it is the longest and the one whose result matters most if the lease ends early.
#
#   bash benchmarks/gpu_session.sh RESULTS [DATA]
#
#   RESULTS  folder for the JSON records, the readable tables, logs and the comparison report
#   DATA     the realglio-train folder (default ../shared/data/realglio-train); only read
#
# Environment: MINUTES (training budget per method in the comparison, default 3), NP (worker processes,
# default 12), WORK (scratch folder, default RESULTS/../gpu_work), and BENCH_TRAINING_ARGS, BENCH_INFERENCE_ARGS,
# COMPARE_SKIP=1 for dry runs elsewhere. A stage that finished (RESULTS/<stage>.done) is skipped when the script
# is run again, so an interrupted session resumes where it stopped; the comparison resumes inside itself.
# nvidia-smi, when present, samples GPU use every 5 s into RESULTS/gpu_use.csv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
results=$(mkdir -p "$1" && cd "$1" && pwd)
data=$(cd "${2:-$root/../shared/data/realglio-train}" && pwd)
work=${WORK:-$(dirname "$results")/gpu_work}
mkdir -p "$work"
export PYTHONUNBUFFERED=1 nnUNet_compile=${nnUNet_compile:-f} nnUNet_n_proc_DA=${NP:-12}

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

if [ -z "${COMPARE_SKIP:-}" ]; then
  MINUTES=${MINUTES:-3} NP=${NP:-12} stage compare bash "$root/benchmarks/compare_realglio.sh" "$data" "$work/compare"
  cp -r "$root/benchmarks/compare_realglio" "$results/"
  cp "$work/compare/logs/"*.log "$results/compare_realglio/" 2>/dev/null || true
fi
# shellcheck disable=SC2086
stage bench_inference python3 "$root/benchmarks/bench_inference.py" --repeats 2 \
  --out "$results/bench_inference.json" ${BENCH_INFERENCE_ARGS:-}
# shellcheck disable=SC2086
stage bench_training python3 "$root/benchmarks/bench_training.py" --raw "$data" --work "$work/training" \
  -np "${NP:-12}" ${BENCH_TRAINING_ARGS:-}
cp "$work/training/bench_training.json" "$results/"
touch "$results/all.done"
