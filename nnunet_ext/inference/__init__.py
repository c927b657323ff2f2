"""SliceRes inference: the multi-view 2.5D predictor, its view specifications and post-processing.

``predict_folder`` (:mod:`nnunet_ext.inference.predict`) is what ``nnunet-ext predict`` does, as one call::

    from nnunet_ext.inference import predict_folder
    predict_folder("imagesTs", "predictions", "nnUNet_results/Dataset501_X/SliceResTrainer__nnUNetPlans__2d",
                   device="cpu", transforms="fast")

Names are resolved lazily (PEP 562): importing one submodule (the views, post-processing) does not load the others.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"FolderPrediction": "predict", "PredictionSetupError": "predict", "predict_folder": "predict"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
