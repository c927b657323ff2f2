"""SliceResPlanner: nnU-Net's default planner plus the ``sliceres`` block in the 2d configuration.

Everything nnU-Net plans (spacing, normalisation, 2d / 3d_fullres / 3d_lowres configurations, plans name
``nnUNetPlans``) stays exactly as the stock planner writes it, so stock baselines train on the same
preprocessed data. The only addition is ``plans["configurations"]["2d"]["sliceres"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

from nnunet_ext.planning import settings as sliceres_settings


class SliceResPlanner(ExperimentPlanner):
    """Stock ``ExperimentPlanner`` whose saved plans carry the resolved SliceRes settings.

    nnU-Net only finds planners inside its own package, so ``nnunet-ext plan`` instantiates this class
    directly. ``overrides`` is a partial ``sliceres`` block (preset merged with ``--set`` values).
    """

    def __init__(self, dataset_name_or_id: str | int, overrides: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(dataset_name_or_id, **kwargs)
        self.sliceres_overrides = dict(overrides or {})

    def sliceres_block(self) -> dict[str, Any]:
        """The resolved block for this dataset (derived keys filled from the fingerprint)."""
        transpose_forward, _ = self.determine_transpose()
        spacing = np.asarray(self.determine_fullres_target_spacing())
        shapes = [compute_new_shape(shape, case_spacing, spacing) for shape, case_spacing in
                  zip(self.dataset_fingerprint["shapes_after_crop"], self.dataset_fingerprint["spacings"])]
        if not shapes:
            raise ValueError(f"dataset {self.dataset_name} has no training cases in its fingerprint")
        min_depth = int(np.min(np.asarray(shapes)[:, transpose_forward[0]]))
        return sliceres_settings.build(self.sliceres_overrides, len(self.dataset_json["channel_names"]),
                                       [float(s) for s in spacing[transpose_forward]], min_depth)

    def save_plans(self, plans: dict) -> None:
        """Add the ``sliceres`` block to the 2d configuration, then save as nnU-Net does."""
        plans["configurations"][sliceres_settings.SLICERES_CONFIGURATION][sliceres_settings.SLICERES_KEY] = \
            self.sliceres_block()
        super().save_plans(plans)
