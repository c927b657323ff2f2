"""``predict_folder``: SliceRes prediction of a folder of cases, everything ``nnunet-ext predict`` does, as one call.

nnU-Net preprocesses, exports in original geometry with its file naming, writes ``save_probabilities`` files
(mean probabilities, before post-processing) and splits jobs with ``num_parts/part_id``; around it this
function checks the model folder and the inputs before any work, records the settings that change results
(:mod:`nnunet_ext.inference.folder_prediction`) before the first case, refuses ``continue_prediction`` into a
folder predicted with other settings, stages nnU-Net's exports so that a case reaches its final name only
post-processed, and copies what it prints to a log file in the output folder. ``nnunet-ext predict`` is this
function behind argument parsing; ``nnunet-ext compare`` and ``nnunet-ext demo`` predict through that command.

Like ``nnUNetv2_predict``, it sets the process's torch threads for the device (every core on the CPU unless
``OMP_NUM_THREADS`` says otherwise, one with CUDA) unless ``set_threads=False``; while predicting, threads are
capped at nnU-Net's ``default_num_processes``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_ext.errors import UsageError
from nnunet_ext.inference import folder_prediction as fp
from nnunet_ext.planning.sliceres_settings import INFERENCE_MODES, SettingsError
from nnunet_ext.run_log import stdout_logged_to

LOG_PREFIX = "sliceres_predict_log"


class PredictionSetupError(UsageError):
    """Bad input found before any case is predicted; the message names the file or setting and the problem."""


@dataclass(frozen=True)
class FolderPrediction:
    """What :func:`predict_folder` did."""

    output_folder: Path
    #: the settings recorded in ``sliceres_prediction.json``
    record: dict[str, Any]
    #: this part's cases (all cases with ``num_parts=1``)
    cases: list[str]
    #: the cases predicted by this call; the others were complete already (``continue_prediction``)
    predicted: list[str]
    log: Path


def predict_folder(input_folder: str | Path, output_folder: str | Path, model_folder: str | Path, *,
                   folds: Sequence[int | str] | None = None, checkpoint: str = "checkpoint_final.pth",
                   axes: Sequence[int] | None = None, transforms: str | Sequence[int] = "all",
                   inference: str | None = None, tile_step_size: float = 0.5, postprocess: str = "auto",
                   min_size: int | None = None, slices_per_batch: int | None = None,
                   save_probabilities: bool = False, continue_prediction: bool = False,
                   num_processes_preprocessing: int = 3, num_processes_export: int = 3, num_parts: int = 1,
                   part_id: int = 0, device: str = "cuda", perform_everything_on_device: bool = True,
                   precision: str = "auto", backend: str = "torch", set_threads: bool = True, verbose: bool = False,
                   progress: bool = True) -> FolderPrediction:
    """Predict every case (of this part) of ``input_folder`` into ``output_folder`` with a SliceRes model.

    ``folds``: default every fold with ``checkpoint``. ``axes``: default the axes the model was trained on.
    ``transforms``: a preset name (``all``, ``mirror``, ``fast``, ``identity``) or indices 0..7.
    ``inference``: ``whole`` slices, ``tiles`` (nnU-Net's sliding window over each slice) or, by default, the model
    plans' ``sliceres.inference``. ``postprocess``:
    ``auto`` (the model folder's recorded setting, else the default for its labels), ``components``,
    ``cascade`` or ``none``. ``num_processes_preprocessing`` and ``num_processes_export`` both 0: nnU-Net's
    sequential mode. ``precision`` (``auto``: nnU-Net's, ``fp32``, ``bf16``) and ``backend`` (``torch``, ``openvino``
    on the CPU): :mod:`nnunet_ext.inference.backends`. Raises :class:`PredictionSetupError` for bad input, before
    any case is predicted.
    """
    import torch
    from nnunetv2.configuration import default_num_processes

    from nnunet_ext.inference import postprocessing as pp
    from nnunet_ext.inference.backends import BackendUnavailable
    from nnunet_ext.inference.model_folder import check_folds, check_inputs, resolve_model_folder
    from nnunet_ext.inference.predictor import NotSliceResNetwork, SliceResPredictor
    from nnunet_ext.inference.views import parse_transforms

    if not 0 <= part_id < num_parts:
        raise PredictionSetupError(f"part_id (-part_id) must be in 0..{num_parts - 1} for num_parts (-num_parts) "
                                   f"{num_parts}, got {part_id}")
    if num_processes_preprocessing == 0 and num_processes_export == 0 and num_parts > 1:
        raise PredictionSetupError("no preprocessing and export processes (-npp 0 -nps 0, sequential mode) do not "
                                   "support num_parts (-num_parts) > 1, as in nnU-Net")
    if inference is not None and inference not in INFERENCE_MODES:
        raise PredictionSetupError(f"inference must be one of {INFERENCE_MODES}, got {inference!r}")
    try:
        transforms = parse_transforms(transforms) if isinstance(transforms, str) else tuple(transforms)
        model_folder = resolve_model_folder(str(model_folder), None, "SliceResTrainer", "nnUNetPlans", "2d")
        folds = check_folds(model_folder, None if folds is None else [str(f) for f in folds], checkpoint)
        check_inputs(str(input_folder), model_folder, num_processes_preprocessing)
        dataset_json = json.loads((model_folder / "dataset.json").read_text())
        setting = pp.resolve_setting(postprocess, dataset_json, pp.load_setting(model_folder), min_size)
        torch_device = _device(device, set_threads)
        predictor = SliceResPredictor(axes=axes, transforms=transforms, tile_step_size=tile_step_size,
                                      perform_everything_on_device=perform_everything_on_device, device=torch_device,
                                      verbose=verbose, verbose_preprocessing=verbose, allow_tqdm=progress,
                                      slices_per_batch=slices_per_batch,
                                      tiles=None if inference is None else inference == "tiles",
                                      precision=precision, backend=backend)
    except (ValueError, BackendUnavailable) as error:
        raise PredictionSetupError(str(error)) from None
    try:
        predictor.initialize_from_trained_model_folder(str(model_folder), folds, checkpoint)
    except NotSliceResNetwork as error:
        raise PredictionSetupError(str(error)) from None
    try:  # the settings the model's plans decide, read now: a bad block is named before any case
        inference = "tiles" if predictor.uses_tiles else "whole"
        views = predictor.views
    except SettingsError as error:
        raise PredictionSetupError(f"{model_folder / 'plans.json'}: {error}") from None
    file_ending = dataset_json["file_ending"]
    cases = _part_case_ids(str(input_folder), file_ending, num_parts, part_id)
    output = Path(output_folder)
    output.mkdir(parents=True, exist_ok=True)
    record = {"model_folder": str(model_folder.resolve()), "folds": folds, "checkpoint": checkpoint,
              "axes": sorted({v.axis for v in views}), "transforms": list(transforms),
              "inference": inference, "tile_step_size": tile_step_size, "precision": precision, "backend": backend,
              "postprocessing": setting.to_json()}
    if continue_prediction:
        try:
            fp.check_continuation(output, record, file_ending)
        except ValueError as error:
            raise PredictionSetupError(str(error)) from None
    fp.write_record(output, record)  # before any case: an interrupted run can be checked when continued
    with stdout_logged_to(output, LOG_PREFIX + (f"_part{part_id}" if num_parts > 1 else "")) as log:
        print(f"nnunet-ext predict: log {log}")
        done = set(fp.finished_cases(output, cases, file_ending)) if continue_prediction else set()
        todo = [c for c in cases if c not in done]
        threads = min(default_num_processes, torch.get_num_threads())
        described = (f"tiles (step {tile_step_size})" if inference == "tiles" else "whole slices") + (
            f", {backend} {precision}")
        print(f"SliceRes prediction: {len(predictor.views)} views (axes {record['axes']} x transforms "
              f"{record['transforms']}), folds {folds}, {described}, post-processing {setting.describe()}, "
              f"device {device} with {threads} torch threads; {len(todo)} of {len(cases)} cases to predict")
        if todo:
            _predict_cases(predictor, Path(input_folder), output, todo, file_ending, setting, save_probabilities,
                           num_processes_preprocessing, num_processes_export, part_id)
    return FolderPrediction(output, record, cases, todo, log)


def _predict_cases(predictor, input_folder: Path, output: Path, todo: list[str], file_ending: str, setting,
                   save_probabilities: bool, npp: int, nps: int, part_id: int) -> None:
    """nnU-Net predicts into this part's staging folder; post-processing moves each case to its final name."""
    from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

    inputs = create_lists_from_splitted_dataset_folder(str(input_folder), file_ending, todo)
    staging = fp.staging_folder(output, part_id)
    staged = [str(staging / case_id) for case_id in todo]
    if npp == 0 and nps == 0:
        predictor.predict_from_files_sequential(inputs, staged, save_probabilities, True, None)
    else:
        predictor.predict_from_files(inputs, staged, save_probabilities=save_probabilities, overwrite=True,
                                     num_processes_preprocessing=npp, num_processes_segmentation_export=nps)
    fp.finalise(staging, output, todo, file_ending, setting, max(1, nps))


def _device(name: str, set_threads: bool):
    """The torch device called ``name`` (``ValueError`` for CUDA without one), with nnU-Net's thread settings."""
    import multiprocessing

    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda (-device cuda): no CUDA device is available; use cpu (-device cpu)")
    if set_threads and name == "cpu":
        # nnU-Net takes every core; an explicit OMP_NUM_THREADS wins (oversubscribed threads are far slower)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or multiprocessing.cpu_count()))
    elif set_threads and name == "cuda":
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only possible once per process, before any parallel work (a second call here)
            pass
    return torch.device(name)


def _part_case_ids(input_folder: str, file_ending: str, num_parts: int, part_id: int) -> list[str]:
    """The cases nnU-Net assigns to this part (its own rule: sorted identifiers, every num_parts-th)."""
    from nnunetv2.utilities.utils import get_identifiers_from_splitted_dataset_folder

    return [str(c) for c in get_identifiers_from_splitted_dataset_folder(input_folder, file_ending)[part_id::num_parts]]
