"""The ``sliceres`` block of the plans: every SliceRes setting, visible and editable in ``nnUNetPlans.json``.

The block lives at ``plans["configurations"]["2d"]["sliceres"]``. Stock nnU-Net ignores unknown keys, so
the same plans keep serving ``nnUNetv2_train D 2d 0`` and ``... 3d_fullres 0``. ``SliceResTrainer`` reads the
block and materialises it into its own copy of the plans (see :mod:`nnunet_ext.training.materialise`). Code
reads the block typed and checked, as :class:`~nnunet_ext.planning.sliceres_settings.SliceResSettings`; the
functions here work on its JSON (presets, ``--set`` overrides, the planner's derived keys).

Keys left ``None`` here are derived from the dataset at planning time (:func:`resolve`):

- ``neighbours``: 3 per side for one modality, 2 for several (the published 7- and 20-channel inputs);
- ``axes``: axes of the preprocessed (transposed) array to slice along. Axis 0 (nnU-Net's 2d plane) always;
  axis 1 or 2 only if the two in-plane spacings of its slices differ by at most nnU-Net's anisotropy
  threshold (3x), so thick-slice scans are not sliced into smeared planes. Resample to isotropic spacing at
  conversion if all three axes are wanted on such data;
- ``inference_window_depth``: slices per 3D window of nnU-Net's sliding-window prediction, 32 capped at the
  smallest training volume along axis 0 (deeper windows would be zero-padded) but never below 2k+1.

``slices_per_case_load`` (default 8) is a data-loading setting, not part of the method: nnU-Net stores 2d
preprocessed volumes in blosc2 with one chunk per axis-0 plane, so a slice along axis 1 or 2 has to
decompress the whole volume. The loader therefore cuts the epoch's balanced slice list into runs of up to
this many slices of one case, shuffles the runs and decompresses a case once per run. The slices of an
epoch and their 50/50 balance are unchanged; a batch then mixes about ``batch_size / slices_per_case_load``
cases instead of ``batch_size``. ``1`` restores an independently shuffled slice list (slow on axes 1/2).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from nnunet_ext.planning.sliceres_settings import (
    DEFAULTS,
    NETWORK_CLASS,
    SettingsError,
    SliceResSettings,
    as_written,
    deep_merge,
    is_int,
)

SLICERES_KEY = "sliceres"
SLICERES_CONFIGURATION = "2d"
PRESET_PACKAGE = "nnunet_ext.presets"  # shipped as package data, so presets work from a wheel too
ANISOTROPY_THRESHOLD = 3.0  # nnunetv2.configuration.ANISO_THRESHOLD, repeated to keep this module import-light
DEFAULT_WINDOW_DEPTH = 32


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["loss.focal_gamma=1.5", "axes=[0]"]`` -> nested overrides. Values are JSON, else plain strings."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE with a dotted key, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = overrides
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {part!r} is set to a value and used as a group at once")
        node[parts[-1]] = value
    return overrides


def shipped_presets() -> list[str]:
    """Names of the presets shipped with the package (``nnunet_ext/presets/<name>.json``)."""
    return sorted(entry.name[:-5] for entry in resources.files(PRESET_PACKAGE).iterdir()
                  if entry.name.endswith(".json"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A shipped preset by name (see :func:`shipped_presets`) or any JSON file path: a partial ``sliceres`` block."""
    path = Path(name_or_path)
    if path.is_file():
        where, text = str(path), path.read_text()
    elif name_or_path in shipped_presets():
        where = f"preset {name_or_path!r}"
        text = resources.files(PRESET_PACKAGE).joinpath(f"{name_or_path}.json").read_text()
    else:
        raise FileNotFoundError(f"preset {name_or_path!r} is neither a file nor one of {shipped_presets()}")
    try:
        preset = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg}, line {error.lineno} column {error.colno})") from None
    if not isinstance(preset, dict):
        raise ValueError(f"{where} must hold a JSON object (a partial sliceres block)")
    preset.pop("description", None)
    return preset


def auto_axes(spacing: list[float], threshold: float = ANISOTROPY_THRESHOLD) -> list[int]:
    """Axes whose slices are near-isotropic in-plane (spacing ratio <= threshold); axis 0 always."""
    axes = [0]
    for axis in (1, 2):
        plane = [s for i, s in enumerate(spacing) if i != axis]
        if max(plane) / min(plane) <= threshold:
            axes.append(axis)
    return axes


def resolve(settings: Mapping[str, Any], num_modalities: int, spacing: list[float],
            min_depth: int) -> dict[str, Any]:
    """Fill the derived keys (``None``) from the dataset and validate the result.

    ``spacing`` is the 3D spacing of the preprocessed data after nnU-Net's transpose; ``min_depth`` the
    smallest training volume along axis 0 after preprocessing.
    """
    resolved = copy.deepcopy(dict(settings))
    if resolved.get("neighbours") is None:
        resolved["neighbours"] = 3 if num_modalities == 1 else 2
    if resolved.get("axes") is None:
        resolved["axes"] = auto_axes(spacing)
    if resolved.get("inference_window_depth") is None:
        resolved["inference_window_depth"] = max(2 * resolved["neighbours"] + 1,
                                                 min(DEFAULT_WINDOW_DEPTH, int(min_depth)))
    return SliceResSettings.from_dict(resolved).to_dict()


def check_overrides(overrides: Mapping[str, Any], num_modalities: int, num_outputs: int) -> dict[str, Any]:
    """Preset/``--set`` values over the defaults, checked before any planning work; returns the merged block.

    Raises :class:`SettingsError` with every problem: types and ranges (derived keys may still be null) and
    whether the network imports, builds and runs for this dataset's modalities and outputs.
    """
    merged = deep_merge(DEFAULTS, overrides)
    try:
        SliceResSettings.from_dict(merged, resolved=False)
        problems = []
    except SettingsError as error:
        problems = error.problems
    network = merged["network"]
    if isinstance(network, Mapping) and isinstance(network.get("class_name"), str) \
            and isinstance(network.get("kwargs"), Mapping):
        problems += network_problems(merged, num_modalities, num_outputs)
    if problems:
        raise SettingsError(problems)
    return merged


def network_problems(settings: Mapping[str, Any], num_modalities: int, num_outputs: int) -> list[str]:
    """Import and build the network as nnU-Net will (``get_network_from_plans`` arguments).

    Catches at planning time what would otherwise fail only when training starts. No forward pass (seconds on
    a busy CPU); a network that declares its ``downsampling`` factor gets the crop size checked against it.
    Invalid ``neighbours`` or ``crop_size`` (reported by ``SliceResSettings.from_dict``) are replaced by their
    defaults here.
    """
    import pydoc

    name, kwargs = settings["network"]["class_name"], dict(settings["network"]["kwargs"])
    neighbours = settings["neighbours"]
    if not (is_int(neighbours) and neighbours >= 0):
        neighbours = 3 if num_modalities == 1 else 2
    crop = settings["crop_size"]
    crop = crop[0] if isinstance(crop, list) and crop and is_int(crop[0]) and crop[0] > 0 else DEFAULTS["crop_size"][0]
    where = f"sliceres.network.class_name = {as_written(name)}"
    try:
        network_class = pydoc.locate(name)
    except pydoc.ErrorDuringImport as error:
        return [f"{where}: importing it fails ({error.exc.__name__}: {error.value})"]
    if not callable(network_class):
        return [f"{where}: no such class can be imported (expected a path such as {NETWORK_CLASS!r})"]
    try:
        network = network_class(input_channels=num_modalities, num_classes=num_outputs, neighbours=neighbours,
                                deep_supervision=False, **kwargs)
    except (TypeError, ValueError, RuntimeError) as error:
        return [f"sliceres.network = {as_written(dict(settings['network']))}: cannot be built for {num_modalities} "
                f"modalities x {2 * neighbours + 1} slices -> {num_outputs} outputs "
                f"({type(error).__name__}: {str(error).strip()[-300:]})"]
    factor = getattr(network, "downsampling", 1)
    if is_int(factor) and crop % factor:
        return [f"sliceres.crop_size = {as_written(settings['crop_size'])}: must be divisible by {factor}, the "
                f"downsampling of this network"]
    return []


def build(overrides: Mapping[str, Any], num_modalities: int, spacing: list[float], min_depth: int) -> dict[str, Any]:
    """Defaults, then preset/``--set`` overrides, then derived keys: the block the planner writes."""
    return resolve(deep_merge(DEFAULTS, overrides), num_modalities, spacing, min_depth)


def from_configuration(configuration: Mapping[str, Any], where: str = "plans") -> SliceResSettings:
    """The checked settings of a plans configuration, with a hint when its block is missing."""
    if SLICERES_KEY not in configuration:
        raise KeyError(f"{where} has no '{SLICERES_KEY}' block in this configuration: plan the dataset with "
                       f"`nnunet-ext plan -d DATASET` and train configuration '{SLICERES_CONFIGURATION}'")
    return SliceResSettings.from_dict(configuration[SLICERES_KEY])
