"""Turn the ``sliceres`` block into the plans entries stock nnU-Net code acts on.

``SliceResTrainer`` applies this to its own copy of the plans; nnU-Net then saves that copy as the model
folder's ``plans.json``, which makes the model folder self-describing for stock ``nnUNetv2_predict``:

- ``architecture``: ``SliceResNet`` by dotted path with its kwargs (neighbours included), built by nnU-Net's
  ``get_network_from_plans``;
- ``batch_size``: the SliceRes batch size (nnU-Net's DDP code splits it across GPUs);
- ``patch_size``: ``[inference_window_depth, crop, crop]``, a 3D patch of whole slices, so nnU-Net's
  sliding window hands the network (1, C, depth, crop, crop) blocks, which SliceResNet predicts slice by
  slice in 2.5D (never centre-slice-only).
"""

from __future__ import annotations

import copy
from typing import Any

from nnunet_ext.planning.settings import SLICERES_KEY, from_configuration


def sliceres_plans(plans: dict[str, Any], configuration: str) -> dict[str, Any]:
    """A copy of ``plans`` whose ``configuration`` describes the SliceRes model (see module docstring)."""
    plans = copy.deepcopy(plans)
    if configuration not in plans.get("configurations", {}):
        raise KeyError(f"configuration {configuration!r} is not in the plans "
                       f"(available: {sorted(plans.get('configurations', {}))})")
    conf = plans["configurations"][configuration]
    settings = from_configuration(conf, f"plans configuration {configuration!r}")
    block = settings.to_dict()
    conf[SLICERES_KEY] = block
    conf["batch_size"] = settings.batch_size
    conf["patch_size"] = [settings.inference_window_depth, *block["crop_size"]]
    conf["architecture"] = {
        "network_class_name": settings.network.class_name,
        "arch_kwargs": {"neighbours": settings.neighbours, **block["network"]["kwargs"]},
        "_kw_requires_import": [],
    }
    return plans
