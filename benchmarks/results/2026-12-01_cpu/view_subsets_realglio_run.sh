#!/usr/bin/env bash
# CPU direction run: quarter-width SliceRes on realglio fold 0, then per-view probabilities tiles vs whole.
set -euo pipefail
cd /work/main; . .venv/bin/activate
W=/tmp/rgv
export nnUNet_raw=$W/raw nnUNet_preprocessed=$W/pre nnUNet_results=$W/res nnUNet_compile=f nnUNet_n_proc_DA=1
eval "$(nnunet-ext env)"
mkdir -p $nnUNet_raw $nnUNet_preprocessed $nnUNet_results
[ -e $nnUNet_raw/Dataset601_RealGlio ] || cp -r /work/shared/data/realglio-train $nnUNet_raw/Dataset601_RealGlio
[ -f $nnUNet_preprocessed/Dataset601_RealGlio/nnUNetPlans.json ] || nnunet-ext plan -d 601 -c 2d -np 2 \
   --set 'network.kwargs.widths=[8,16,32,64]' --set seed=0 --set loss.focal_alpha=null
NNUNET_EXT_EPOCHS=${EPOCHS:-6} NNUNET_EXT_ITERATIONS=${ITERS:-100} NNUNET_EXT_VAL_ITERATIONS=5 \
   nnUNetv2_train 601 2d 0 -tr SliceResTrainer -device cpu --npz
python benchmarks/view_subsets.py -m $nnUNet_results/Dataset601_RealGlio/SliceResTrainer__nnUNetPlans__2d -f 0 \
   --device cpu --whole --max-cases 1 --out $W/view_subsets.json
