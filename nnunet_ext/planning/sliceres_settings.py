"""Typed SliceRes settings: the plans' ``sliceres`` block as frozen dataclasses, checked in one place.

The block stays plain JSON in ``nnUNetPlans.json``, readable and editable there (:mod:`nnunet_ext.planning.settings`
says where it lives, how presets and ``--set`` fill it and which keys planning derives from the data). Code reads
it through :class:`SliceResSettings` (``settings.loss.focal_gamma``), nnU-Net's ``ConfigurationManager`` way.

Every field declares its plans key, its default and its check. :meth:`SliceResSettings.from_dict` runs all checks
and raises :class:`SettingsError` listing every problem at once, one line each naming the key, the value as
written and what is allowed, in the order of the keys in the plans. :meth:`SliceResSettings.to_dict` gives the
block back with the same keys, order and values, so ``from_dict(block).to_dict() == block`` for a complete valid
block and ``from_dict(settings.to_dict()) == settings``. JSON arrays are held as tuples and objects as read-only
mappings: a settings object cannot be changed by accident (:func:`dataclasses.replace` makes a changed copy).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field, fields
from types import MappingProxyType
from typing import Any

NETWORK_CLASS = "nnunet_ext.network.sliceres_net.SliceResNet"
EPOCH_MODES = ("all_slices", "iterations")
#: names of the training augmentations (nnunet_ext.sampling.transforms): "d4" is the study's flips/rot90, the
#: others select transforms of nnU-Net's own 2d training pipeline (nnUNetTrainer.get_training_transforms)
AUGMENTATIONS = ("d4", "spatial", "noise", "blur", "brightness", "contrast", "lowres", "gamma")
#: loss.focal_alpha values (nnunet_ext.loss.focal_dice); "inverse_frequency", the name before both readings
#: existed, keeps meaning what it computed then (per batch), so existing plans train and resume unchanged
FOCAL_ALPHAS = ("dataset_frequency", "batch_frequency", None)
FOCAL_ALPHA_ALIASES = {"inverse_frequency": "batch_frequency"}
#: in-plane inference (nnunet_ext.inference.predictor): the study's sliding window of training-crop tiles, or each
#: slice whole in one pass; the plans' value is what ``nnunet-ext predict`` does unless ``--inference`` says otherwise
INFERENCE_MODES = ("tiles", "whole")

#: a field's check: why ``value`` is not allowed ("must be ..."), or None when it is
Check = Callable[[Any], "str | None"]


class SettingsError(ValueError):
    """Invalid SliceRes settings; the message has one line per problem: key, value, what is allowed."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# ------------------------------------------------------------------------------------------------ checks
def is_int(value: Any) -> bool:
    """A JSON integer (``true`` is not a batch size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite JSON number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def as_written(value: Any) -> str:
    """A value as the user wrote it (JSON: true, null, "text")."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def integer(minimum: int, note: str = "") -> Check:
    return lambda value: None if is_int(value) and value >= minimum else f"must be an integer >= {minimum}{note}"


def number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = False) -> Check:
    """A number in ``[low, high]``; ``low_open`` / ``high_open`` exclude the ends, ``high`` None: no upper end."""
    if high is None:
        why = f"must be a number {'>' if low_open else '>='} {low:g}"
    else:
        why = f"must be a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value: Any) -> str | None:
        ok = is_number(value) and (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high))
        return None if ok else why
    return check


def one_of(allowed: Iterable[Any], why: str) -> Check:
    allowed = tuple(allowed)
    return lambda value: None if value in allowed else why


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _crop_size(value: Any) -> str | None:
    if not (isinstance(value, list) and len(value) == 2 and all(is_int(c) and c > 0 and c % 8 == 0 for c in value)):
        return "must be two positive integers divisible by 8, e.g. [96, 96] (the network downsamples 3 times)"
    if value[0] != value[1]:
        return "must be square: the 90-degree rotations of the augmentation need a square crop"
    return None


def _axes(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(is_int(a) for a in value) and len(set(value)) == len(value) \
        and set(value) <= {0, 1, 2}
    return None if ok else "must be a non-empty list of distinct axes from 0, 1, 2"


def _augmentation(value: Any) -> str | None:
    if not (isinstance(value, list) and all(isinstance(n, str) for n in value) and len(set(value)) == len(value)):
        return f"must be a list of distinct names from {', '.join(AUGMENTATIONS)}"
    if unknown := [n for n in value if n not in AUGMENTATIONS]:
        return f"unknown {', '.join(map(repr, unknown))}; known: {', '.join(AUGMENTATIONS)}"
    return None


def _betas(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) == 2 and all(is_number(b) and 0 <= b < 1 for b in value)
    return None if ok else "must be two numbers in [0, 1), e.g. [0.9, 0.999]"


def _class_path(value: Any) -> str | None:
    ok = isinstance(value, str) and "." in value.strip(".")
    return None if ok else f"must be an importable class path such as {NETWORK_CLASS!r}"


def _json_object(value: Any) -> str | None:
    return None if isinstance(value, Mapping) else "must be a JSON object of the network's constructor arguments"


def _optional_int(value: Any) -> str | None:
    return None if value is None or is_int(value) else "must be an integer or null"


# ------------------------------------------------------------------------------------------ the machinery
def setting(default: Any, check: Check | None, *, key: str | None = None, derived: bool = False) -> Any:
    """A field with its ``check``, stored under ``key`` in the plans (default: the field's name). ``derived``
    keys may be null until planning fills them from the dataset."""
    metadata = {"check": check, "key": key, "derived": derived}
    if isinstance(default, Mapping):
        return field(default_factory=lambda: _freeze(default), metadata=metadata)
    return field(default=_freeze(default), metadata=metadata)


def group(block: type[Block]) -> Any:
    """A field holding a nested JSON object of the block."""
    return field(default_factory=block, metadata={"block": block})


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


class Block:
    """One JSON object of the ``sliceres`` block: its fields by plans key, their checks, JSON in and out."""

    @classmethod
    def by_key(cls) -> dict[str, Field]:
        return {f.metadata.get("key") or f.name: f for f in fields(cls)}

    @classmethod
    def relations(cls, data: Mapping[str, Any], valid: set[str], resolved: bool) -> Iterable[tuple[str, str]]:
        """``(key, why)`` for rules between keys; ``valid``: the keys whose own checks passed."""
        return ()

    @classmethod
    def problems(cls, data: Mapping[str, Any], prefix: str, resolved: bool) -> list[str]:
        """Every problem of ``data`` (all keys present), as ``sliceres.<prefix><key> = <value>: <why>`` lines.

        Nested objects that are not JSON objects are reported alone: the other checks look inside them.
        """
        keys = cls.by_key()

        def line(key: str, why: str) -> str:
            return f"sliceres.{prefix}{key} = {as_written(data.get(key))}: {why}"

        not_objects = [line(key, f"must be a JSON object with the keys {sorted(f.metadata['block'].by_key())}")
                       for key, f in keys.items() if "block" in f.metadata and not isinstance(data[key], Mapping)]
        if not_objects:
            return not_objects
        found = [(-1, line(key, f"unknown key; the {prefix.rstrip('.')} block has {sorted(keys)}"))
                 for key in sorted(set(data) - set(keys))]
        position = {key: i for i, key in enumerate(keys)}
        valid = set()
        for key, f in keys.items():
            if "block" in f.metadata:
                found += [(position[key], p) for p in f.metadata["block"].problems(data[key], f"{prefix}{key}.",
                                                                                  resolved)]
                continue
            if f.metadata["derived"] and not resolved and data[key] is None:
                continue
            why = f.metadata["check"](data[key]) if f.metadata["check"] else None
            if why is None:
                valid.add(key)
            else:
                found.append((position[key], line(key, why)))
        found += [(position[key], line(key, why)) for key, why in cls.relations(data, valid, resolved)]
        return [text for _, text in sorted(found, key=lambda item: item[0])]

    @classmethod
    def from_valid(cls, data: Mapping[str, Any]) -> Block:
        """The dataclass of ``data``, which :meth:`problems` found valid."""
        return cls(**{f.name: f.metadata["block"].from_valid(data[key]) if "block" in f.metadata
                      else _freeze(data[key]) for key, f in cls.by_key().items()})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as the plans hold it (a fresh copy: lists and dicts)."""
        return {key: getattr(self, f.name).to_dict() if "block" in f.metadata else _thaw(getattr(self, f.name))
                for key, f in self.by_key().items()}


# ----------------------------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class EpochSettings(Block):
    """What an epoch is: ``all_slices`` (every foreground slice once, balanced with empty ones; its length is
    counted on the training fold) or a fixed number of ``iterations``."""

    mode: str = setting("all_slices", one_of(EPOCH_MODES, f"must be one of {', '.join(EPOCH_MODES)}"))
    iterations_per_epoch: int = setting(250, integer(1))
    val_iterations_per_epoch: int = setting(50, integer(1))


@dataclass(frozen=True)
class NetworkSettings(Block):
    """The network by dotted class path and its constructor arguments (plus ``neighbours``, set by the trainer)."""

    class_name: str = setting(NETWORK_CLASS, _class_path)
    # slices_per_forward (prediction batch): 24 views of a 4x155x240x240 case on an H100 took 10.2 s at 32,
    # 4.0 s at 128 and 3.5 s at 512, peak 1.0 / 1.3 / 1.8 GiB (benchmarks/results/2026-11-22_h100)
    kwargs: Mapping[str, Any] = setting({"widths": [32, 64, 128, 256], "blocks_down": [1, 2, 2, 4],
                                         "blocks_up": [1, 1, 1], "slices_per_forward": 128}, _json_object)


@dataclass(frozen=True)
class LossSettings(Block):
    """Focal + soft Dice (:class:`nnunet_ext.loss.focal_dice.FocalDiceLoss`)."""

    focal_gamma: float = setting(2.0, number(0))
    # null: the best measured (README, Training); the study's reading is "dataset_frequency" (presets).
    # Held as written ("inverse_frequency" stays itself in the plans); resolved_focal_alpha resolves the alias
    focal_alpha: str | None = setting(None, one_of(
        (*FOCAL_ALPHAS, *FOCAL_ALPHA_ALIASES), "must be 'dataset_frequency' (one weight per class from the training "
                                               "fold), 'batch_frequency' (recomputed per batch; alias "
                                               "'inverse_frequency') or null"))
    include_background: bool = setting(False, _boolean)
    dice_eps: float = setting(1e-5, number(0, low_open=True))
    focal_weight: float = setting(1.0, number(0))
    dice_weight: float = setting(1.0, number(0))

    @property
    def resolved_focal_alpha(self) -> str | None:
        """``focal_alpha`` with the old name resolved (see :data:`FOCAL_ALPHA_ALIASES`)."""
        return FOCAL_ALPHA_ALIASES.get(self.focal_alpha, self.focal_alpha)

    @classmethod
    def relations(cls, data: Mapping[str, Any], valid: set[str], resolved: bool) -> Iterable[tuple[str, str]]:
        if {"focal_weight", "dice_weight"} <= valid and data["focal_weight"] + data["dice_weight"] == 0:
            yield "dice_weight", "focal_weight and dice_weight must not both be 0"


@dataclass(frozen=True)
class OptimizerSettings(Block):
    name: str = setting("Adam", one_of(("Adam",), "only 'Adam' (the published optimiser) is implemented"))
    betas: tuple[float, float] = setting([0.9, 0.999], _betas)
    eps: float = setting(1e-8, number(0, low_open=True))
    weight_decay: float = setting(0.0, number(0))


@dataclass(frozen=True)
class ScheduleSettings(Block):
    """The one-cycle learning rate (:mod:`nnunet_ext.training.one_cycle`): linear warm-up from
    ``warmup_start_lr`` to ``max_lr`` over ``warmup_fraction`` of the steps, cosine annealing to ``final_lr``."""

    name: str = setting("one_cycle", one_of(("one_cycle",), "only 'one_cycle' (the published schedule) is "
                                                            "implemented"))
    # plans key "initial_lr", as in torch's OneCycleLR: the rate the warm-up starts from. Not nnU-Net's
    # nnUNetTrainer.initial_lr, the rate its poly schedule starts and decays from: SliceResTrainer sets that to max_lr
    warmup_start_lr: float = setting(4e-5, number(0, low_open=True), key="initial_lr")
    max_lr: float = setting(1e-3, number(0, low_open=True))
    final_lr: float = setting(1e-8, number(0))
    warmup_fraction: float = setting(0.1, number(0, 1, high_open=True))

    @classmethod
    def relations(cls, data: Mapping[str, Any], valid: set[str], resolved: bool) -> Iterable[tuple[str, str]]:
        if {"initial_lr", "max_lr", "final_lr"} <= valid and \
                not data["initial_lr"] <= data["max_lr"] >= data["final_lr"]:
            yield "max_lr", "must be >= initial_lr and >= final_lr (the peak of the one-cycle schedule)"


@dataclass(frozen=True)
class SliceResSettings(Block):
    """The whole ``sliceres`` block. ``neighbours``, ``axes`` and ``inference_window_depth`` are null until planning
    derives them (:func:`nnunet_ext.planning.settings.resolve`); a trainer or predictor sees them set.

    ``slices_per_case_load`` is a data-loading setting, not part of the method: the loader cuts the epoch's
    balanced slice list into runs of up to this many slices of one case and decompresses a case once per run
    (see :mod:`nnunet_ext.planning.settings`); ``1`` restores an independently shuffled slice list.
    """

    neighbours: int | None = setting(None, integer(0, " (slices per side)"), derived=True)
    crop_size: tuple[int, int] = setting([96, 96], _crop_size)
    batch_size: int = setting(32, integer(1))
    axes: tuple[int, ...] | None = setting(None, _axes, derived=True)
    inference_window_depth: int | None = setting(None, None, derived=True)  # checked against neighbours (relations)
    inference: str = setting("tiles", one_of(INFERENCE_MODES, "must be 'whole' (each slice in one pass) or 'tiles' "
                                                              "(the study's sliding window of training-crop tiles)"))
    foreground_fraction: float = setting(0.5, number(0, 1))
    augmentation_probability: float = setting(0.75, number(0, 1))
    augmentation: tuple[str, ...] = setting(["d4"], _augmentation)
    slices_per_case_load: int = setting(8, integer(1, " (1 = no grouping of slices by case)"))
    num_epochs: int = setting(100, integer(1))
    epoch: EpochSettings = group(EpochSettings)
    network: NetworkSettings = group(NetworkSettings)
    loss: LossSettings = group(LossSettings)
    optimizer: OptimizerSettings = group(OptimizerSettings)
    schedule: ScheduleSettings = group(ScheduleSettings)
    seed: int | None = setting(None, _optional_int)

    @property
    def slices_per_modality(self) -> int:
        """Slices in one 2.5D input per modality: the centre slice and ``neighbours`` on each side."""
        return 2 * self.neighbours + 1

    @classmethod
    def relations(cls, data: Mapping[str, Any], valid: set[str], resolved: bool) -> Iterable[tuple[str, str]]:
        if resolved or data["inference_window_depth"] is not None:
            k = data["neighbours"]
            known = is_int(k) and k >= 0
            why = integer(2 * k + 1 if known else 1, " (2 * neighbours + 1)" if known else "")(
                data["inference_window_depth"])
            if why:
                yield "inference_window_depth", why
        if "foreground_fraction" in valid and data["epoch"]["mode"] == "all_slices" \
                and data["foreground_fraction"] == 0:
            yield "foreground_fraction", "must be > 0 for 'all_slices' epochs (defined by the foreground slices)"

    @classmethod
    def from_dict(cls, block: Mapping[str, Any], resolved: bool = True) -> SliceResSettings:
        """The settings of a (partial) ``sliceres`` block: missing keys take their defaults (plans written before
        a key existed), every value is checked (:class:`SettingsError` lists all problems; an unknown key is a
        ``ValueError`` naming it and the known ones, see :func:`check_known_keys`).

        ``resolved=False`` is the check of preset/``--set`` values before any planning work: the keys derived
        from the dataset (``neighbours``, ``axes``, ``inference_window_depth``) may still be null then.
        """
        check_known_keys(block)
        merged = deep_merge(DEFAULTS, block)
        problems = cls.problems(merged, "", resolved)
        if problems:
            raise SettingsError(problems)
        return cls.from_valid(merged)


#: the default block, as JSON (derived keys null)
DEFAULTS: dict[str, Any] = SliceResSettings().to_dict()


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, recursing into nested dicts (override wins)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check_known_keys(settings: Mapping[str, Any], reference: Mapping[str, Any] = DEFAULTS, prefix: str = "") -> None:
    """Reject misspelled keys early (a typo in ``--set`` would otherwise be silently ignored)."""
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if key not in reference:
            raise ValueError(f"unknown SliceRes setting {name!r}; known: {sorted(reference)}")
        if isinstance(reference[key], Mapping) and isinstance(value, Mapping) and key != "network":
            check_known_keys(value, reference[key], f"{name}.")
