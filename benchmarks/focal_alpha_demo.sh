#!/usr/bin/env bash
# loss.focal_alpha null vs "batch_frequency" vs "dataset_frequency" on the demo's synthetic GLI data, on a CPU.
#
#   bash benchmarks/focal_alpha_demo.sh [WORK] [EPOCHS]
#
# 1. `nnunet-ext demo` (standard profile: 20 synthetic cases at 64x64x48, one patient's two time points held out as
#    fold 0's validation, quarter-width network, crop 64, batch 16), run with a 1-iteration budget only to convert,
#    plan and preprocess;
# 2. three copies of its plans (nnUNetPlans_alpha_{null,batch,dataset}) that differ only in loss.focal_alpha, all
#    with seed 0 (same initialisation and batches);
# 3. each trained for EPOCHS (default 4) x 25 iterations on the CPU; nnU-Net's final validation predicts the two
#    held-out cases; their Dice and predicted / reference volume per BraTS region go to WORK/focal_alpha.json.
# An epoch budget (not minutes) keeps the variants comparable on a shared, unevenly loaded machine.
set -euo pipefail
work=$(mkdir -p "${1:-benchmarks/.work_focal_alpha}" && cd "${1:-benchmarks/.work_focal_alpha}" && pwd)
epochs=${2:-4}
export nnUNet_compile=f nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1}
nnunet-ext demo --task gli --out "$work/demo" --budget-epochs 1 --budget-iterations 1 --device cpu --quiet
export nnUNet_raw=$work/demo/nnUNet_raw nnUNet_preprocessed=$work/demo/nnUNet_preprocessed
export nnUNet_results=$work/results
pre=$nnUNet_preprocessed/Dataset990_DemoGLI
python - "$pre" <<'EOF'
import json, sys
from pathlib import Path
pre = Path(sys.argv[1])
plans = json.loads((pre / "nnUNetPlans.json").read_text())
for name, alpha in (("null", None), ("batch", "batch_frequency"), ("dataset", "dataset_frequency")):
    variant = json.loads(json.dumps(plans))
    variant["plans_name"] = f"nnUNetPlans_alpha_{name}"
    block = variant["configurations"]["2d"]["sliceres"]
    block["loss"]["focal_alpha"], block["seed"] = alpha, 0
    (pre / f"nnUNetPlans_alpha_{name}.json").write_text(json.dumps(variant, indent=2))
EOF
for variant in null batch dataset; do
  NNUNET_EXT_EPOCHS=$epochs NNUNET_EXT_ITERATIONS=25 NNUNET_EXT_VAL_ITERATIONS=2 \
    nnUNetv2_train 990 2d 0 -tr SliceResTrainer -p "nnUNetPlans_alpha_$variant" -device cpu > "$work/train_$variant.log" 2>&1
done
python - "$work" "$pre/gt_segmentations" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
import SimpleITK as sitk
work, gt = Path(sys.argv[1]), Path(sys.argv[2])
regions = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,), "NETC": (1,), "SNFH": (2,), "RC": (4,)}
out = {}
for variant in ("null", "batch", "dataset"):
    val = work / "results/Dataset990_DemoGLI" / f"SliceResTrainer__nnUNetPlans_alpha_{variant}__2d/fold_0/validation"
    rows = {r: [] for r in regions}
    for file in sorted(val.glob("*.nii.gz")):
        image = sitk.ReadImage(str(file))
        pred, ref = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(sitk.ReadImage(str(gt / file.name)))
        ml = float(np.prod(image.GetSpacing())) / 1000
        for r, labels in regions.items():
            p, g = np.isin(pred, labels), np.isin(ref, labels)
            rows[r].append((2 * (p & g).sum() / max(p.sum() + g.sum(), 1) if p.any() or g.any() else 1.0,
                            p.sum() * ml, g.sum() * ml))
    out[variant] = {r: {"dice": float(np.mean([d for d, _, _ in v])), "pred_ml": float(sum(p for _, p, _ in v)),
                        "ref_ml": float(sum(g for _, _, g in v))} for r, v in rows.items()}
    print(variant, "  ".join(f"{r} Dice {d['dice']:.3f} {d['pred_ml']:.1f}/{d['ref_ml']:.1f} ml"
                             for r, d in out[variant].items()))
(work / "focal_alpha.json").write_text(json.dumps(out, indent=2))
EOF
