"""2.5D balanced slice sampling on real nnU-Net (blosc2) datasets whose voxels encode their coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

from nnunet_ext import dihedral
from nnunet_ext.planning import settings
from nnunet_ext.planning.sliceres_settings import SliceResSettings
from nnunet_ext.sampling.loader import BalancedSliceLoader, crop_window, group_into_runs
from nnunet_ext.sampling.slice_index import build_slice_index
from nnunet_ext.sampling.transforms import DihedralTransform, training_augmentation
from nnunet_ext.slicing import neighbour_indices

SHAPE = (6, 7, 8)  # X, Y, Z
N_MOD = 2


def encode(c, x, y, z):
    return 1 + c * 1_000_000 + x * 10_000 + y * 100 + z


def decode(v: np.ndarray) -> tuple[np.ndarray, ...]:
    v = v.astype(np.int64) - 1
    return v // 1_000_000, v // 10_000 % 100, v // 100 % 100, v % 100


@pytest.fixture
def dataset(tmp_path):
    """Two cases in nnU-Net's blosc2 format; foreground where x in 2..3 and y in 2..4 (case 0) / z == 5 (case 1)."""
    c, x, y, z = np.meshgrid(*[np.arange(s) for s in (N_MOD, *SHAPE)], indexing="ij")
    data = encode(c, x, y, z).astype(np.float32)
    segs = [np.zeros((1, *SHAPE), np.int16), np.zeros((1, *SHAPE), np.int16)]
    segs[0][0, 2:4, 2:5, :] = 1
    segs[1][0, :, :, 5] = 2
    segs[1][0, 0, 0, 0] = -1  # nnU-Net's "outside the nonzero mask" marker is not foreground
    for i, seg in enumerate(segs):
        nnUNetDatasetBlosc2.save_case(data, seg, {"case": i}, str(tmp_path / f"case_{i}"),
                                      chunks=(1, *SHAPE), blocks=(1, *SHAPE))
    return nnUNetDatasetBlosc2(str(tmp_path))


def make_loader(dataset, tmp_path, axes=(0, 1, 2), **kwargs):
    index = build_slice_index(dataset, list(axes), None, tmp_path / "index.pkl")
    args = dict(batch_size=8, neighbours=2, crop_size=(8, 8), foreground_fraction=0.5, iterations_per_epoch=4,
                transforms=None, seed=123, slices_per_case_load=3)
    args.update(kwargs)
    return BalancedSliceLoader(dataset, index, **args)


def test_slice_index_finds_foreground_slices_along_each_axis(dataset, tmp_path):
    index = build_slice_index(dataset, [0, 1, 2], None, tmp_path / "index.pkl")
    fg = {tuple(r) for r in index.foreground.tolist()}
    expected = {(0, 0, i) for i in (2, 3)} | {(0, 1, i) for i in (2, 3, 4)} | {(0, 2, i) for i in range(8)}
    expected |= {(1, 0, i) for i in range(6)} | {(1, 1, i) for i in range(7)} | {(1, 2, 5)}
    assert fg == expected
    assert len(index.foreground) + len(index.empty) == 2 * sum(SHAPE)
    # the cache is reused: a second build gives the same index without reading segmentations
    again = build_slice_index(dataset, [0, 1, 2], None, tmp_path / "index.pkl")
    np.testing.assert_array_equal(again.foreground, index.foreground)


@pytest.mark.parametrize("per_load", [1, 3])
def test_epoch_is_balanced_shuffled_and_draws_all_axes(dataset, tmp_path, per_load):
    loader = make_loader(dataset, tmp_path, slices_per_case_load=per_load)
    plan = loader.epoch_plan(0)
    assert len(plan) == loader.examples_per_epoch == 32
    assert plan[:, 3].sum() == 16
    assert set(plan[:, 1].tolist()) == {0, 1, 2}
    assert not (plan[:16, 3].all() and not plan[16:, 3].any())  # shuffled, not fg-then-empty
    fractions = []
    for b in range(8):
        batch = loader.make_batch(b)
        has_fg = (batch["target"] > 0).flatten(1).any(1)
        fractions.append(has_fg.float().mean().item())
        assert {k.split("/")[1] for k in batch["keys"]} <= {"axis0", "axis1", "axis2"}
    assert np.mean(fractions) == pytest.approx(0.5, abs=1e-6)  # every foreground row keeps its label


def test_all_slices_epoch_shows_every_foreground_slice_once(dataset, tmp_path):
    index = build_slice_index(dataset, [0, 1, 2], None, tmp_path / "index.pkl")
    n_fg = len(index.foreground)
    loader = make_loader(dataset, tmp_path, batch_size=1, iterations_per_epoch=2 * n_fg)
    plan = loader.epoch_plan(3)
    fg_rows = {tuple(r) for r in plan[plan[:, 3] == 1][:, :3].tolist()}
    assert len(fg_rows) == n_fg == (plan[:, 3] == 1).sum()


# nnU-Net's DDP split of a global batch over 1, 2 and 4 ranks (nnUNetTrainer._set_batch_size_and_oversample)
RANK_SPLITS = [[8], [4, 4], [2, 2, 2, 2], [7], [4, 3], [2, 2, 2, 1]]


def rank_plans(dataset, tmp_path, sizes: list[int], epoch: int, **kwargs) -> list[np.ndarray]:
    """Every rank's epoch plan in a simulated DDP world with per-rank batch sizes ``sizes``."""
    return [make_loader(dataset, tmp_path, batch_size=size, rank=rank, rank_batch_sizes=sizes, **kwargs)
            .epoch_plan(epoch) for rank, size in enumerate(sizes)]


@pytest.mark.parametrize("sizes", RANK_SPLITS)
def test_ranks_split_one_epoch_disjointly_and_balanced(dataset, tmp_path, sizes):
    iterations = 3  # 21-24 examples: fewer than either pool, so the single-process plan repeats no slice
    single = make_loader(dataset, tmp_path, batch_size=sum(sizes), iterations_per_epoch=iterations).epoch_plan(2)
    plans = rank_plans(dataset, tmp_path, sizes, 2, iterations_per_epoch=iterations)
    assert len({tuple(r) for r in single.tolist()}) == len(single)
    rows = [{tuple(r) for r in plan.tolist()} for plan in plans]
    assert sum(len(r) for r in rows) == len(set().union(*rows)) == len(single)  # disjoint, no repeats
    assert sorted(map(tuple, np.concatenate(plans).tolist())) == sorted(map(tuple, single.tolist()))
    for plan, size in zip(plans, sizes):
        assert len(plan) == iterations * size
        assert abs(plan[:, 3].sum() - 0.5 * len(plan)) <= 1  # the 50/50 balance holds on every rank
    if len(sizes) == 1:
        np.testing.assert_array_equal(plans[0], single)


@pytest.mark.parametrize("sizes", [[3, 3], [2, 2, 1, 1]])
def test_all_slices_epoch_over_ranks_shows_every_foreground_slice_once(dataset, tmp_path, sizes):
    index = build_slice_index(dataset, [0, 1, 2], None, tmp_path / "index.pkl")
    n_fg = len(index.foreground)
    assert 2 * n_fg % sum(sizes) == 0
    plan = np.concatenate(rank_plans(dataset, tmp_path, sizes, 3, iterations_per_epoch=2 * n_fg // sum(sizes)))
    fg_rows = [tuple(r) for r in plan[plan[:, 3] == 1][:, :3].tolist()]
    assert len(fg_rows) == len(set(fg_rows)) == n_fg


def test_rank_batch_size_must_be_its_share(dataset, tmp_path):
    with pytest.raises(ValueError, match="rank 1 with batch size 4"):
        make_loader(dataset, tmp_path, batch_size=4, rank=1, rank_batch_sizes=[4, 3])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_neighbour_order_edges_and_centre_label(dataset, tmp_path, axis):
    loader = make_loader(dataset, tmp_path, axes=(axis,), crop_size=(16, 16))
    rng = np.random.default_rng(0)
    depth = SHAPE[axis]
    k = 2
    for idx in (0, 1, depth - 1):
        image, label, key = loader.example(rng, np.array([0, axis, idx, 0]), *loader.volumes(0, whole=True))
        lazy = loader.example(np.random.default_rng(0), np.array([0, axis, idx, 0]), *loader.volumes(0, whole=False))
        again = loader.example(np.random.default_rng(0), np.array([0, axis, idx, 0]), *loader.volumes(0, whole=True))
        assert torch.equal(lazy[0], again[0]) and torch.equal(lazy[1], again[1])  # in-memory == blosc2 slices
        assert key == f"case_0/axis{axis}/{idx}"
        assert image.shape == (N_MOD * (2 * k + 1), 16, 16)
        inside = image[0] > 0  # padding is 0, every real voxel is >= 1
        assert inside.sum() == np.prod([s for a, s in enumerate(SHAPE) if a != axis])
        for m in range(N_MOD):
            for j, expected in enumerate(neighbour_indices(idx, depth, k)):
                c, *coords = decode(image[m * (2 * k + 1) + j].numpy()[inside.numpy()])
                assert (c == m).all()
                assert (coords[axis] == expected).all()
        # the label is the centre slice's label, cropped with the same window
        centre = image[2].numpy()
        _, *coords = decode(centre[inside.numpy()])
        seg = np.asarray(dataset.load_case("case_0")[1][0])
        np.testing.assert_array_equal(label[0].numpy()[inside.numpy()], seg[tuple(coords)])
        assert (label[0].numpy()[~inside.numpy()] == -1).all()


def test_runs_keep_every_row_once_and_group_cases():
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.integers(0, 5, 200), np.arange(200)])
    for run_length in (1, 4, 8):
        grouped = group_into_runs(rows, np.random.default_rng(1), run_length)
        assert sorted(grouped[:, 1].tolist()) == list(range(200))  # a permutation of the rows
        np.testing.assert_array_equal(rows[grouped[:, 1], 0], grouped[:, 0])
        # same-case stretches are unions of whole runs: at most as many stretches as runs ...
        stretches = 1 + (np.diff(grouped[:, 0]) != 0).sum()
        runs = sum(-(-c // run_length) for c in np.bincount(rows[:, 0]))
        assert stretches <= runs
        assert stretches >= runs // 2  # ... and the runs are shuffled across cases, not sorted by case
    assert len(group_into_runs(rows[:0], rng, 8)) == 0


def test_grouping_changes_the_order_but_not_the_slices_of_an_epoch(dataset, tmp_path):
    plain = make_loader(dataset, tmp_path, slices_per_case_load=1, iterations_per_epoch=8)
    grouped = make_loader(dataset, tmp_path, slices_per_case_load=4, iterations_per_epoch=8)
    for epoch in (0, 5):
        a, b = plain.epoch_plan(epoch), grouped.epoch_plan(epoch)
        assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, b.tolist()))
        np.testing.assert_array_equal(b, grouped.epoch_plan(epoch))  # reproducible
        switches = (np.diff(b[:, 0]) != 0).sum()
        assert switches >= 4 and switches < (np.diff(a[:, 0]) != 0).sum()  # cases mixed, in runs


class CountingDataset(nnUNetDatasetBlosc2):
    """nnU-Net's blosc2 dataset, counting reads per case."""

    def __init__(self, folder):
        super().__init__(folder)
        self.loads: list[str] = []

    def load_case(self, identifier):
        self.loads.append(identifier)
        return super().load_case(identifier)


def test_each_case_is_read_once_per_batch(dataset, tmp_path):
    counting = CountingDataset(dataset.source_folder)
    loader = make_loader(counting, tmp_path, slices_per_case_load=4)
    for b in range(4):
        counting.loads.clear()
        batch = loader.make_batch(b)
        cases = {key.split("/")[0] for key in batch["keys"]}
        assert len(counting.loads) == len(set(counting.loads)) <= len(cases)


def test_slices_per_case_load_is_validated():
    with pytest.raises(ValueError, match="sliceres.slices_per_case_load"):
        settings.build({"slices_per_case_load": 0}, 4, [1, 1, 1], 100)
    assert settings.build({}, 4, [1, 1, 1], 100)["slices_per_case_load"] == 8


def test_in_memory_and_blosc2_reads_give_identical_examples(dataset, tmp_path):
    """Decompressed volumes are cut to the crop window before stacking; blosc2 ones are stacked whole."""
    loader = make_loader(dataset, tmp_path, crop_size=(4, 4))  # smaller than every plane: the cut matters
    rows = np.concatenate([np.column_stack([loader.index.foreground, np.ones(len(loader.index.foreground))]),
                           np.column_stack([loader.index.empty, np.zeros(len(loader.index.empty))])]).astype(int)
    for row in rows:
        case = int(row[0])
        whole = loader.example(np.random.default_rng(row.tolist()), row, *loader.volumes(case, whole=True))
        lazy = loader.example(np.random.default_rng(row.tolist()), row, *loader.volumes(case, whole=False))
        assert torch.equal(whole[0], lazy[0]) and torch.equal(whole[1], lazy[1]), row
        assert whole[0].shape == (N_MOD * 5, 4, 4)


def test_crop_window_contains_anchor_and_pads_small_axes():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lb = crop_window(rng, 100, 32, must_contain=90)
        assert 0 <= lb <= 68 and lb <= 90 < lb + 32
        small = crop_window(rng, 20, 32, must_contain=None)
        assert -12 <= small <= 0  # the 20 voxels always lie inside the 32-voxel window


def test_batches_are_reproducible_and_independent_of_worker_split(dataset, tmp_path):
    transforms = d4_transforms(2)
    one = make_loader(dataset, tmp_path, transforms=transforms)
    again = make_loader(dataset, tmp_path, transforms=transforms)
    worker1_of_2 = make_loader(dataset, tmp_path, transforms=transforms, num_workers=2)
    worker1_of_2.set_thread_id(1)
    batches = [next(one) for _ in range(2)]
    repeated = [next(again) for _ in range(2)]
    assert torch.equal(batches[1]["data"], repeated[1]["data"])
    assert torch.equal(batches[1]["data"], next(worker1_of_2)["data"])
    assert torch.equal(batches[1]["target"], make_loader(dataset, tmp_path, transforms=transforms)
                       .make_batch(1)["target"])
    other_seed = make_loader(dataset, tmp_path, transforms=transforms, seed=7).make_batch(1)
    assert not torch.equal(batches[1]["data"], other_seed["data"])


def test_resume_starts_the_stream_at_the_checkpoint_epoch(dataset, tmp_path):
    fresh = make_loader(dataset, tmp_path)
    resumed = make_loader(dataset, tmp_path, start_epoch=2)
    assert torch.equal(next(resumed)["data"], fresh.make_batch(2 * fresh.iterations_per_epoch)["data"])


def d4_transforms(neighbours: int):
    """The default augmentation (D4, p = 0.75) with nnU-Net's label handling, for ``neighbours`` per side."""
    block = settings.build({"neighbours": neighbours, "crop_size": [8, 8]}, 2, [1, 1, 1], 100)
    return training_augmentation(SliceResSettings.from_dict(block), regions=None, ignore_label=None).transforms


@pytest.mark.parametrize("t", range(8))
def test_each_augmentation_inverts_exactly_and_moves_image_and_label_together(t):
    image = torch.arange(3 * 6 * 6, dtype=torch.float32).reshape(3, 6, 6)
    label = image[1:2].clone().to(torch.int16)
    transform = DihedralTransform()
    out = transform.apply({"image": image.clone(), "segmentation": label.clone()}, t=t)
    assert torch.equal(dihedral.invert(out["image"], t), image)
    assert torch.equal(dihedral.invert(out["segmentation"], t), label)
    assert torch.equal(out["segmentation"][0].float(), out["image"][1])


def test_augmentation_probability_and_all_elements_used():
    transforms = d4_transforms(0)
    image = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    seen, changed = set(), 0
    torch.manual_seed(0)
    n = 800
    for _ in range(n):
        out = transforms(image=image.clone(), segmentation=torch.zeros(1, 4, 4, dtype=torch.int16))["image"]
        changed += not torch.equal(out, image)
        seen.add(out.numpy().tobytes())
    assert changed / n == pytest.approx(0.75, abs=0.05)
    assert len(seen) == 8
