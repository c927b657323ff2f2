#!/usr/bin/env bash
# The run behind inference_variants_{RealGlio,BraTS2021}.{json,txt} (2026-12-01, this project's 2-core CPU box,
# quiet apart from short test runs; torch 2.14.1 CPU, OpenVINO 2026.4, nnU-Net 2.8): quarter-width SliceRes
# (widths 8-64) trained 6 x 75 iterations per fold on all five folds of both real datasets, then every fold's
# held-out cases predicted with the 6-view ensemble (--transforms fast) four ways on the same checkpoints.
EPOCHS=6 ITERS=75 SHARED=../shared/data \
VARIANTS="tiles=--inference,tiles,--transforms,fast whole=--inference,whole,--transforms,fast whole_bf16=--inference,whole,--transforms,fast,--precision,bf16 whole_ov_bf16=--inference,whole,--transforms,fast,--precision,bf16,--backend,openvino" \
  bash benchmarks/inference_variants_cpu.sh /tmp/tvw/work /tmp/tvw/out
