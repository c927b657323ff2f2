"""SliceResTrainer: nnU-Net's trainer running the SliceRes method on the 2d configuration.

    nnUNetv2_train DATASET 2d FOLD -tr SliceResTrainer [-device cpu] [--c] [--val] [-num_gpus N]

Everything else is nnU-Net's: checkpoints, ``--c`` resume, ``--val``, logs, progress plot, the DDP batch
split, and the end-of-training validation, which predicts through nnU-Net's sliding window with the
3D patch of whole slices set in :mod:`nnunet_ext.training.materialise` (real 2.5D input for every slice).
What changes: the network and batch size (from the plans' ``sliceres`` block), the balanced 2.5D slice
loader with the ``augmentation`` setting's transforms (:mod:`nnunet_ext.sampling.transforms`), focal +
soft Dice loss, Adam with a per-iteration one-cycle schedule, no
deep supervision, in-plane test-time mirroring only, and the budget variables of
:mod:`nnunet_ext.training.budget_mixin`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

from nnunet_ext.loss import class_weights
from nnunet_ext.loss.focal_dice import FocalDiceLoss
from nnunet_ext.planning.settings import from_configuration
from nnunet_ext.planning.sliceres_settings import SliceResSettings
from nnunet_ext.sampling.loader import BalancedSliceLoader
from nnunet_ext.sampling.slice_index import SliceIndex, build_slice_index
from nnunet_ext.sampling.transforms import training_augmentation
from nnunet_ext.training.budget_mixin import BudgetMixin
from nnunet_ext.training.materialise import sliceres_plans
from nnunet_ext.training.one_cycle import OneCycleSchedule

TRAIN_STREAM, VAL_STREAM = 0, 1


class SliceResTrainer(BudgetMixin, nnUNetTrainer):
    """The SliceRes method inside nnU-Net (see module docstring)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(sliceres_plans(plans, configuration), configuration, fold, dataset_json, device)
        if self.is_cascaded:
            raise ValueError("SliceResTrainer does not support cascaded configurations")
        self.sliceres: SliceResSettings = from_configuration(self.configuration_manager.configuration)
        s = self.sliceres
        self.enable_deep_supervision = False
        self.num_epochs = s.num_epochs
        self.num_iterations_per_epoch = s.epoch.iterations_per_epoch  # all_slices: set in plan_epoch
        self.num_val_iterations_per_epoch = s.epoch.val_iterations_per_epoch
        # nnU-Net's initial_lr is the rate its poly schedule starts and decays from, i.e. the peak: max_lr here
        # (what nnU-Net logs); the one-cycle warm-up starts lower, at schedule.warmup_start_lr
        self.initial_lr = s.schedule.max_lr
        self.weight_decay = s.optimizer.weight_decay
        self.oversample_foreground_percent = s.foreground_fraction  # for nnU-Net's logs; the loader balances
        # in-plane flips of the (depth, H, W) window; nnU-Net sets this in its rotation/mirroring hook, which reads
        # the patch size as a training patch and is not called here (see sampling.transforms.ROTATION)
        self.inference_allowed_mirroring_axes = (1, 2)
        self.apply_budget()
        if s.seed is not None:
            torch.manual_seed(s.seed)  # network initialisation
        self._iteration = 0
        self._resumed = False

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """SliceResNet has no deep supervision; nnU-Net toggles it around validation."""

    def _build_loss(self) -> FocalDiceLoss:
        """The loss; dataset-level class weights are added in :meth:`on_train_start` (they need the data)."""
        loss = self.sliceres.loss
        return FocalDiceLoss(use_sigmoid=self.label_manager.has_regions, gamma=loss.focal_gamma,
                             dice_eps=loss.dice_eps, focal_alpha=loss.resolved_focal_alpha,
                             include_background=loss.include_background,
                             focal_weight=loss.focal_weight, dice_weight=loss.dice_weight,
                             ignore_label=self.label_manager.ignore_label)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        self._resumed = True

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.loss.focal_alpha == "dataset_frequency":
            self.loss.set_class_weights(self.focal_class_weights().tensor())

    def focal_class_weights(self) -> class_weights.ClassWeights:
        """The fold's dataset-level focal weights: computed and stored on a fresh start, read back on resume.

        Stored in the fold folder, so ``--c`` continues with the numbers the run started with; a fresh
        start (no checkpoint loaded) recomputes them from the current training cases and overwrites the file.
        """
        path = Path(self.output_folder) / class_weights.WEIGHTS_FILE
        spec = class_weights.ClassSpec.from_label_manager(self.label_manager)
        if self._resumed and path.is_file():
            weights = class_weights.ClassWeights.read(path, spec)
            self.print_to_log_file(f"Resumed {weights.describe()} (from {path})")
            return weights
        dataset_tr, _ = self.get_tr_and_val_datasets()
        weights = class_weights.compute(dataset_tr, spec, self.sliceres.axes, self.sliceres.foreground_fraction,
                                        where=f"fold {self.fold}")
        if self.local_rank == 0:
            weights.write(path)
        self.print_to_log_file(f"Computed {weights.describe()} (stored in {path})")
        return weights

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, OneCycleSchedule]:
        opt, sched = self.sliceres.optimizer, self.sliceres.schedule
        optimizer = torch.optim.Adam(self.network.parameters(), lr=sched.warmup_start_lr, betas=opt.betas,
                                     eps=opt.eps, weight_decay=opt.weight_decay)
        schedule = OneCycleSchedule(optimizer, self.num_epochs, self.num_iterations_per_epoch,
                                    initial_lr=sched.warmup_start_lr, max_lr=sched.max_lr, final_lr=sched.final_lr,
                                    warmup_fraction=sched.warmup_fraction)
        return optimizer, schedule

    def on_planned_epochs_changed(self) -> None:
        """The one-cycle schedule spans the planned steps: built in ``initialize`` from the plans' epoch, it
        follows the epoch fixed from the data (:meth:`plan_epoch`) and the epochs re-planned under a time limit."""
        self.lr_scheduler.iterations_per_epoch = self.num_iterations_per_epoch
        self.lr_scheduler.num_epochs = self.num_epochs

    def on_train_epoch_start(self) -> None:
        self._iteration = 0
        super().on_train_epoch_start()

    def train_step(self, batch: dict) -> dict:
        self.lr_scheduler.step_iteration(self.current_epoch, self._iteration)
        self._iteration += 1
        return super().train_step(batch)

    def slice_index(self, dataset) -> SliceIndex:
        cache = Path(self.preprocessed_dataset_folder_base) / \
            f"{self.configuration_manager.data_identifier}_sliceres_slices.pkl"
        return build_slice_index(dataset, self.sliceres.axes, self.label_manager.ignore_label, cache)

    def _all_slices_iterations(self, index: SliceIndex) -> int:
        """Iterations of one "all slices" epoch: every foreground slice once, balanced with empty ones."""
        if len(index.foreground) == 0:
            raise ValueError(f"no training slice of fold {self.fold} contains foreground; an 'all_slices' epoch "
                             f"is undefined (set sliceres.epoch.mode to 'iterations' or check the labels)")
        examples = len(index.foreground) / self.sliceres.foreground_fraction
        return math.ceil(examples / self.configuration_manager.batch_size)

    def _ranks_sampling(self, seed: int) -> tuple[int, list[int]]:
        """Rank 0's sampling seed and every rank's share of the batch: with them all DDP ranks draw the same
        epoch plan and each takes its part (see :mod:`nnunet_ext.sampling.loader`)."""
        if not self.is_ddp:
            return seed, [self.batch_size]
        shared = [seed]
        dist.broadcast_object_list(shared, src=0)
        sizes = [None] * dist.get_world_size()
        dist.all_gather_object(sizes, self.batch_size)
        return shared[0], sizes

    def plan_epoch(self, index: SliceIndex) -> None:
        """Fix the epoch once the fold's training slices are known: the length of an ``all_slices`` epoch (unless
        the budget sets the iterations), validation fitted to a time limit, the schedule over the result."""
        s = self.sliceres
        if s.epoch.mode == "all_slices" and self.budget.iterations is None:
            self.num_iterations_per_epoch = self._all_slices_iterations(index)
        self.fit_validation_to_budget()  # before the validation loader is sized
        self.on_planned_epochs_changed()
        self.print_to_log_file(
            f"SliceRes sampling: {len(index.foreground)} foreground / {len(index.empty)} empty training "
            f"slices along axes {list(s.axes)}, {s.slices_per_modality} slices per modality, crop "
            f"{list(s.crop_size)}, epoch mode {s.epoch.mode}: {self.num_iterations_per_epoch} iterations x "
            f"{self.batch_size}, augmentation {', '.join(s.augmentation) or 'none'}")

    def get_dataloaders(self):
        """nnU-Net's hook where the training data is first read: the balanced 2.5D slice loaders instead of
        nnU-Net's patch loaders, with nnU-Net's own training and validation transforms, after the epoch is fixed
        from the fold's slices (:meth:`plan_epoch`); nnU-Net's augmenter workers run them (:meth:`start_workers`)."""
        if self.dataset_class is None:  # nnU-Net's get_dataloaders guards the same way
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        s = self.sliceres
        dataset_tr, dataset_val = self.get_tr_and_val_datasets()
        index_tr, index_val = self.slice_index(dataset_tr), self.slice_index(dataset_val)
        self.plan_epoch(index_tr)

        regions = self.label_manager.foreground_regions if self.label_manager.has_regions else None
        label_transforms = self.get_validation_transforms(None, is_cascaded=False,
                                                          foreground_labels=self.label_manager.foreground_labels,
                                                          regions=regions, ignore_label=self.label_manager.ignore_label)
        seed, rank_batch_sizes = self._ranks_sampling(
            s.seed if s.seed is not None else int(np.random.SeedSequence().entropy))
        n_proc = get_allowed_n_proc_DA()  # nnU-Net's worker counts; a loader strides its batches over >= 1 worker
        common = dict(batch_size=self.batch_size, neighbours=s.neighbours, crop_size=s.crop_size,
                      foreground_fraction=s.foreground_fraction, seed=seed,
                      ignore_label=self.label_manager.ignore_label, start_epoch=self.current_epoch,
                      slices_per_case_load=s.slices_per_case_load, rank=self.local_rank,
                      rank_batch_sizes=rank_batch_sizes)
        augmentation = training_augmentation(s, regions, self.label_manager.ignore_label, self.get_training_transforms)
        dl_tr = BalancedSliceLoader(dataset_tr, index_tr, iterations_per_epoch=self.num_iterations_per_epoch,
                                    transforms=augmentation.transforms, context=augmentation.context,
                                    stream=TRAIN_STREAM, num_workers=max(1, n_proc), **common)
        dl_val = BalancedSliceLoader(dataset_val, index_val, iterations_per_epoch=self.num_val_iterations_per_epoch,
                                     transforms=label_transforms, stream=VAL_STREAM, num_workers=max(1, n_proc // 2),
                                     **common)
        return self.start_workers(dl_tr, dl_val, in_background=n_proc > 0)

    def start_workers(self, dl_tr: BalancedSliceLoader, dl_val: BalancedSliceLoader, in_background: bool) -> tuple:
        """The training and validation streams, started, with as many worker processes as each loader strides over.

        A copy of the end of ``nnUNetTrainer.get_dataloaders``, which builds its own loaders in the same method (no
        hook takes ours), except that a seeded run uses ``MultiThreadedAugmenter``: its round-robin over the
        workers keeps the batch order.
        """
        if not in_background:
            streams = SingleThreadedAugmenter(dl_tr, None), SingleThreadedAugmenter(dl_val, None)
        else:
            pin = self.device.type == "cuda"
            n_train, n_val = dl_tr.number_of_threads_in_multithreaded, dl_val.number_of_threads_in_multithreaded
            if self.sliceres.seed is not None:
                streams = (MultiThreadedAugmenter(dl_tr, None, n_train, 2, None, pin_memory=pin),
                           MultiThreadedAugmenter(dl_val, None, n_val, 2, None, pin_memory=pin))
            else:
                streams = (NonDetMultiThreadedAugmenter(dl_tr, None, n_train, max(6, n_train // 2), None,
                                                        pin_memory=pin, wait_time=0.002),
                           NonDetMultiThreadedAugmenter(dl_val, None, n_val, max(3, n_val // 4), None,
                                                        pin_memory=pin, wait_time=0.002))
        for stream in streams:
            next(stream)  # let the workers start, as nnU-Net does
        return streams
