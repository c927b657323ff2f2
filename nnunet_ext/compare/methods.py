"""The contenders of a comparison: how each is trained and how each predicts with its own standard inference.

A :class:`Method` is one trained model (trainer, plans, configuration); a :class:`Variant` is one way of
predicting with it. Stock nnU-Net models predict once, with nnU-Net's default test-time mirroring; SliceRes
predicts twice: one view (axis 0, no transform: what a plain 2D model sees) and the published 24-view
ensemble (3 axes x 8 dihedral transforms), so the report shows what the ensemble buys. No method is
post-processed (``--postprocess none``; stock ``nnUNetv2_predict`` does none either), so the table compares
networks and their test-time ensembles, not clean-up rules.
"""

from __future__ import annotations

from dataclasses import dataclass

STOCK_TRAINER = "nnUNetTrainerBudget"
SLICERES_TRAINER = "SliceResTrainer"
DEFAULT_PLANS = "nnUNetPlans"
RESENC_PLANNER = "nnUNetPlannerResEncM"
RESENC_PLANS = "nnUNetResEncUNetMPlans"

ONE_VIEW = ("predict", "--axes", "0", "--transforms", "identity")
TWENTY_FOUR_VIEWS = ("predict", "--axes", "0", "1", "2", "--transforms", "all")
PREDICT_ENTRY = "nnunetv2.inference.predict_from_raw_data:predict_entry_point"
EXT_ENTRY = "nnunet_ext.cli:main"


@dataclass(frozen=True)
class Variant:
    """One prediction recipe: ``entry`` is a console entry point, ``args`` go before the common flags."""

    name: str
    entry: str
    args: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Method:
    name: str
    trainer: str
    configuration: str
    plans: str
    variants: tuple[Variant, ...]
    description: str = ""


def _stock(name: str, configuration: str, plans: str, description: str) -> Method:
    variant = Variant(name, PREDICT_ENTRY, (), "nnU-Net's predictor with its default test-time mirroring")
    return Method(name, STOCK_TRAINER, configuration, plans, (variant,), description)


METHODS: dict[str, Method] = {
    "2d": _stock("2d", "2d", DEFAULT_PLANS, "stock nnU-Net 2d U-Net (nnUNetPlans)"),
    "3d_fullres": _stock("3d_fullres", "3d_fullres", DEFAULT_PLANS, "stock nnU-Net 3d_fullres U-Net (nnUNetPlans)"),
    "3d_fullres_resenc": _stock("3d_fullres_resenc", "3d_fullres", RESENC_PLANS,
                                "stock nnU-Net 3d_fullres residual-encoder U-Net, ResEnc M preset"),
    "sliceres": Method(
        "sliceres", SLICERES_TRAINER, "2d", DEFAULT_PLANS,
        (Variant("sliceres_1view", EXT_ENTRY, (*ONE_VIEW, "--postprocess", "none"),
                 "one view: axis 0 slices, no transform"),
         Variant("sliceres_24view", EXT_ENTRY, (*TWENTY_FOUR_VIEWS, "--postprocess", "none"),
                 "24 views: 3 axes x 8 dihedral transforms, averaged")),
        "SliceRes 2.5D network (SliceResTrainer on the 2d configuration)"),
}
DEFAULT_METHODS = ("2d", "3d_fullres", "sliceres")


def select(names: list[str], resenc: bool) -> list[Method]:
    """Methods by name, in the given order, plus the ResEnc baseline when ``resenc`` (error on unknown names)."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
    chosen = list(dict.fromkeys(names))
    if resenc and "3d_fullres_resenc" not in chosen:
        chosen.append("3d_fullres_resenc")
    return [METHODS[n] for n in chosen]
