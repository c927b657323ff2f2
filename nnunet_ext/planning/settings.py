"""The ``sliceres`` block of the plans: every SliceRes setting, visible and editable in ``nnUNetPlans.json``.

The block lives at ``plans["configurations"]["2d"]["sliceres"]``. Stock nnU-Net ignores unknown keys, so
the same plans keep serving ``nnUNetv2_train D 2d 0`` and ``... 3d_fullres 0``. ``SliceResTrainer`` reads the
block and materialises it into its own copy of the plans (see :mod:`nnunet_ext.training.materialise`).

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
import math
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

SLICERES_KEY = "sliceres"
SLICERES_CONFIGURATION = "2d"
NETWORK_CLASS = "nnunet_ext.network.sliceres_net.SliceResNet"
PRESET_PACKAGE = "nnunet_ext.presets"  # shipped as package data, so presets work from a wheel too
EPOCH_MODES = ("all_slices", "iterations")
#: names of the training augmentations (nnunet_ext.sampling.transforms): "d4" is the study's flips/rot90, the
#: others select transforms of nnU-Net's own 2d training pipeline (nnUNetTrainer.get_training_transforms)
AUGMENTATIONS = ("d4", "spatial", "noise", "blur", "brightness", "contrast", "lowres", "gamma")
#: loss.focal_alpha values (nnunet_ext.loss.focal_dice); "inverse_frequency", the name before both readings
#: existed, keeps meaning what it computed then (per batch), so existing plans train and resume unchanged
FOCAL_ALPHAS = ("dataset_frequency", "batch_frequency", None)
FOCAL_ALPHA_ALIASES = {"inverse_frequency": "batch_frequency"}
ANISOTROPY_THRESHOLD = 3.0  # nnunetv2.configuration.ANISO_THRESHOLD, repeated to keep this module import-light
DEFAULT_WINDOW_DEPTH = 32

DEFAULTS: dict[str, Any] = {
    "neighbours": None,
    "crop_size": [96, 96],
    "batch_size": 32,
    "axes": None,
    "inference_window_depth": None,
    "foreground_fraction": 0.5,
    "augmentation_probability": 0.75,
    "augmentation": ["d4"],
    "slices_per_case_load": 8,
    "num_epochs": 100,
    "epoch": {"mode": "all_slices", "iterations_per_epoch": 250, "val_iterations_per_epoch": 50},
    "network": {
        "class_name": NETWORK_CLASS,
        # slices_per_forward (prediction batch): 24 views of a 4x155x240x240 case on an H100 took 10.2 s at 32,
        # 4.0 s at 128 and 3.5 s at 512, peak 1.0 / 1.3 / 1.8 GiB (benchmarks/results/2026-11-22_h100)
        "kwargs": {"widths": [32, 64, 128, 256], "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1],
                   "slices_per_forward": 128},
    },
    # focal_alpha null: the best measured (README, Training); the study's reading is "dataset_frequency" (presets)
    "loss": {"focal_gamma": 2.0, "focal_alpha": None, "include_background": False, "dice_eps": 1e-5,
             "focal_weight": 1.0, "dice_weight": 1.0},
    "optimizer": {"name": "Adam", "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    "schedule": {"name": "one_cycle", "initial_lr": 4e-5, "max_lr": 1e-3, "final_lr": 1e-8,
                 "warmup_fraction": 0.1},
    "seed": None,
}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, recursing into nested dicts (override wins)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


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


def check_known_keys(settings: Mapping[str, Any], reference: Mapping[str, Any] = DEFAULTS, prefix: str = "") -> None:
    """Reject misspelled keys early (a typo in ``--set`` would otherwise be silently ignored)."""
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if key not in reference:
            raise ValueError(f"unknown SliceRes setting {name!r}; known: {sorted(reference)}")
        if isinstance(reference[key], Mapping) and isinstance(value, Mapping) and key != "network":
            check_known_keys(value, reference[key], f"{name}.")


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
    validate(resolved)
    return resolved


class SettingsError(ValueError):
    """Invalid SliceRes settings; the message has one line per problem: key, value, what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a batch size


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    """A value as the user wrote it (JSON: true, null, "text")."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def validate(settings: Mapping[str, Any], resolved: bool = True) -> None:
    """Check the type and range of every key; raise :class:`SettingsError` listing all problems at once.

    ``resolved=False`` is the check of preset/``--set`` values before any planning work: the keys derived
    from the dataset (``neighbours``, ``axes``, ``inference_window_depth``) may still be ``null`` then.
    """
    check_known_keys(settings)
    problems: list[str] = []

    def fail(key: str, why: str) -> None:
        problems.append(f"sliceres.{key} = {_show(_get(settings, key))}: {why}")

    for group, default in DEFAULTS.items():
        if isinstance(default, Mapping) and not isinstance(settings[group], Mapping):
            fail(group, f"must be a JSON object with the keys {sorted(default)}")
    if problems:
        raise SettingsError(problems)  # the checks below look inside the groups

    def derived(key: str) -> bool:
        return not resolved and settings[key] is None

    def integer(key: str, minimum: int, note: str = "") -> None:
        value = _get(settings, key)
        if not (_is_int(value) and value >= minimum):
            fail(key, f"must be an integer >= {minimum}{note}")

    def number(key: str, low: float, high: float | None = None, low_open: bool = False,
               high_open: bool = False) -> bool:
        value = _get(settings, key)
        ok = _is_number(value) and (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high))
        if not ok:
            interval = (f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}" if high is not None
                        else f"{'>' if low_open else '>='} {low:g}")
            fail(key, f"must be a number {'in ' if high is not None else ''}{interval}")
        return ok

    k = settings["neighbours"]
    if not derived("neighbours"):
        integer("neighbours", 0, " (slices per side)")
    crop = settings["crop_size"]
    if not (isinstance(crop, list) and len(crop) == 2 and all(_is_int(c) and c > 0 and c % 8 == 0 for c in crop)):
        fail("crop_size", "must be two positive integers divisible by 8, e.g. [96, 96] (the network downsamples "
                          "3 times)")
    elif crop[0] != crop[1]:
        fail("crop_size", "must be square: the 90-degree rotations of the augmentation need a square crop")
    integer("batch_size", 1)
    axes = settings["axes"]
    if not derived("axes") and not (isinstance(axes, list) and axes and all(_is_int(a) for a in axes)
                                    and len(set(axes)) == len(axes) and set(axes) <= {0, 1, 2}):
        fail("axes", "must be a non-empty list of distinct axes from 0, 1, 2")
    if not derived("inference_window_depth"):
        known_k = _is_int(k) and k >= 0
        integer("inference_window_depth", 2 * k + 1 if known_k else 1, " (2 * neighbours + 1)" if known_k else "")
    if number("foreground_fraction", 0, 1) and settings["epoch"]["mode"] == "all_slices" \
            and settings["foreground_fraction"] == 0:
        fail("foreground_fraction", "must be > 0 for 'all_slices' epochs (defined by the foreground slices)")
    number("augmentation_probability", 0, 1)
    names = settings["augmentation"]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)):
        fail("augmentation", f"must be a list of distinct names from {', '.join(AUGMENTATIONS)}")
    elif unknown := [n for n in names if n not in AUGMENTATIONS]:
        fail("augmentation", f"unknown {', '.join(map(repr, unknown))}; known: {', '.join(AUGMENTATIONS)}")
    integer("slices_per_case_load", 1, " (1 = no grouping of slices by case)")
    integer("num_epochs", 1)
    if settings["epoch"]["mode"] not in EPOCH_MODES:
        fail("epoch.mode", f"must be one of {', '.join(EPOCH_MODES)}")
    for key in ("iterations_per_epoch", "val_iterations_per_epoch"):
        integer(f"epoch.{key}", 1)
    if settings["loss"]["focal_alpha"] not in (*FOCAL_ALPHAS, *FOCAL_ALPHA_ALIASES):
        fail("loss.focal_alpha", "must be 'dataset_frequency' (one weight per class from the training fold), "
                                 "'batch_frequency' (recomputed per batch; alias 'inverse_frequency') or null")
    if not isinstance(settings["loss"]["include_background"], bool):
        fail("loss.include_background", "must be true or false")
    number("loss.focal_gamma", 0)
    number("loss.dice_eps", 0, low_open=True)
    weights_ok = [number("loss.focal_weight", 0), number("loss.dice_weight", 0)]
    if all(weights_ok) and settings["loss"]["focal_weight"] + settings["loss"]["dice_weight"] == 0:
        fail("loss.dice_weight", "focal_weight and dice_weight must not both be 0")
    network = settings["network"]
    for key in sorted(set(network) - set(DEFAULTS["network"])):
        fail(f"network.{key}", f"unknown key; the network block has {sorted(DEFAULTS['network'])}")
    name = network.get("class_name")
    if not (isinstance(name, str) and "." in name.strip(".")):
        fail("network.class_name", f"must be an importable class path such as {NETWORK_CLASS!r}")
    if not isinstance(network.get("kwargs"), Mapping):
        fail("network.kwargs", "must be a JSON object of the network's constructor arguments")
    if settings["optimizer"]["name"] != "Adam":
        fail("optimizer.name", "only 'Adam' (the published optimiser) is implemented")
    betas = settings["optimizer"]["betas"]
    if not (isinstance(betas, list) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)):
        fail("optimizer.betas", "must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    number("optimizer.eps", 0, low_open=True)
    number("optimizer.weight_decay", 0)
    if settings["schedule"]["name"] != "one_cycle":
        fail("schedule.name", "only 'one_cycle' (the published schedule) is implemented")
    rates = [number(f"schedule.{key}", 0, low_open=key != "final_lr") for key in ("initial_lr", "max_lr", "final_lr")]
    schedule = settings["schedule"]
    if all(rates) and not schedule["initial_lr"] <= schedule["max_lr"] >= schedule["final_lr"]:
        fail("schedule.max_lr", "must be >= initial_lr and >= final_lr (the peak of the one-cycle schedule)")
    number("schedule.warmup_fraction", 0, 1, high_open=True)
    if settings["seed"] is not None and not _is_int(settings["seed"]):
        fail("seed", "must be an integer or null")
    if problems:
        raise SettingsError(problems)


def check_overrides(overrides: Mapping[str, Any], num_modalities: int, num_outputs: int) -> dict[str, Any]:
    """Preset/``--set`` values over the defaults, checked before any planning work; returns the merged block.

    Raises :class:`SettingsError` with every problem: types and ranges (derived keys may still be null) and
    whether the network imports, builds and runs for this dataset's modalities and outputs.
    """
    check_known_keys(overrides)
    merged = deep_merge(DEFAULTS, overrides)
    try:
        validate(merged, resolved=False)
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
    Invalid ``neighbours`` or ``crop_size`` (reported by :func:`validate`) are replaced by their defaults here.
    """
    import pydoc

    name, kwargs = settings["network"]["class_name"], dict(settings["network"]["kwargs"])
    neighbours = settings["neighbours"]
    if not (_is_int(neighbours) and neighbours >= 0):
        neighbours = 3 if num_modalities == 1 else 2
    crop = settings["crop_size"]
    crop = crop[0] if isinstance(crop, list) and crop and _is_int(crop[0]) and crop[0] > 0 else DEFAULTS["crop_size"][0]
    where = f"sliceres.network.class_name = {_show(name)}"
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
        return [f"sliceres.network = {_show(dict(settings['network']))}: cannot be built for {num_modalities} "
                f"modalities x {2 * neighbours + 1} slices -> {num_outputs} outputs "
                f"({type(error).__name__}: {str(error).strip()[-300:]})"]
    factor = getattr(network, "downsampling", 1)
    if _is_int(factor) and crop % factor:
        return [f"sliceres.crop_size = {_show(settings['crop_size'])}: must be divisible by {factor}, the "
                f"downsampling of this network"]
    return []


def focal_alpha(loss: Mapping[str, Any]) -> str | None:
    """The ``focal_alpha`` of a validated ``loss`` block, aliases resolved (see :data:`FOCAL_ALPHA_ALIASES`)."""
    return FOCAL_ALPHA_ALIASES.get(loss["focal_alpha"], loss["focal_alpha"])


def _get(settings: Mapping[str, Any], dotted: str) -> Any:
    node: Any = settings
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def build(overrides: Mapping[str, Any], num_modalities: int, spacing: list[float], min_depth: int) -> dict[str, Any]:
    """Defaults, then preset/``--set`` overrides, then derived keys: the block the planner writes."""
    check_known_keys(overrides)
    return resolve(deep_merge(DEFAULTS, overrides), num_modalities, spacing, min_depth)


def from_configuration(configuration: Mapping[str, Any], where: str = "plans") -> dict[str, Any]:
    """The validated block of a plans configuration, with a hint when it is missing."""
    if SLICERES_KEY not in configuration:
        raise KeyError(f"{where} has no '{SLICERES_KEY}' block in this configuration: plan the dataset with "
                       f"`nnunet-ext plan -d DATASET` and train configuration '{SLICERES_CONFIGURATION}'")
    settings = deep_merge(DEFAULTS, configuration[SLICERES_KEY])
    validate(settings)
    return settings
