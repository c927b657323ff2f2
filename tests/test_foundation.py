"""Slice stacking, dihedral transforms, the network and the CLI skeleton."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from nnunet_ext import dihedral
from nnunet_ext.network.sliceres_net import SliceResNet, count_parameters
from nnunet_ext.slicing import neighbour_indices, stack_slice, stack_window


def coordinate_volume(shape=(2, 5, 6, 7)) -> np.ndarray:
    """Each voxel encodes (channel, x, y, z) as c*1e6 + x*1e4 + y*1e2 + z."""
    c, x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return (c * 1_000_000 + x * 10_000 + y * 100 + z).astype(np.float64)


def test_neighbour_indices_repeat_edges():
    assert neighbour_indices(0, 5, 2).tolist() == [0, 0, 0, 1, 2]
    assert neighbour_indices(4, 5, 3).tolist() == [1, 2, 3, 4, 4, 4, 4]
    assert neighbour_indices(2, 5, 1).tolist() == [1, 2, 3]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_stack_slice_order_and_edges(axis):
    vol = coordinate_volume()
    k = 2
    depth = vol.shape[axis + 1]
    for centre in (0, 1, depth - 1):
        stacked = stack_slice(vol, axis, centre, k)
        assert stacked.shape[0] == vol.shape[0] * (2 * k + 1)
        for channel in range(vol.shape[0]):
            for j, idx in enumerate(neighbour_indices(centre, depth, k)):
                expected = np.take(vol[channel], idx, axis=axis)
                np.testing.assert_array_equal(stacked[channel * (2 * k + 1) + j], expected)


def test_stack_window_matches_stack_slice():
    vol = coordinate_volume()
    stacks = stack_window(torch.from_numpy(vol), 3).numpy()
    for d in range(vol.shape[1]):
        np.testing.assert_array_equal(stacks[d], stack_slice(vol, 0, d, 3))


@pytest.mark.parametrize("t", range(8))
def test_dihedral_inverts_exactly(t):
    x = np.arange(2 * 4 * 4).reshape(2, 4, 4)
    np.testing.assert_array_equal(dihedral.invert(dihedral.apply(x, t), t), x)
    xt = torch.from_numpy(x)
    assert torch.equal(dihedral.invert(dihedral.apply(xt, t), t), xt)


def test_dihedral_elements_are_distinct_and_mirrors_are_flips():
    x = np.arange(16).reshape(4, 4)
    images = {dihedral.apply(x, t).tobytes() for t in range(8)}
    assert len(images) == 8
    flips = {np.flip(x, 0).tobytes(), np.flip(x, 1).tobytes(), np.flip(x, (0, 1)).tobytes(), x.tobytes()}
    assert {dihedral.apply(x, t).tobytes() for t in dihedral.MIRRORS} == flips


def test_network_parameter_count_and_shapes():
    glioma = SliceResNet(input_channels=4, num_classes=5, neighbours=2)
    # trainable weights of all convolutions + BatchNorm affine terms; the published figure is "6.6 M"
    assert count_parameters(glioma) == 6_648_165
    meningioma = SliceResNet(input_channels=1, num_classes=2, neighbours=3)
    assert meningioma.stem.in_channels == 7
    assert glioma.stem.in_channels == 20
    out = glioma(torch.randn(2, 20, 96, 96))
    assert out.shape == (2, 5, 96, 96)


def test_network_bottleneck_is_256x12x12():
    net = SliceResNet(input_channels=4, num_classes=5, neighbours=2)
    x = net.stem(torch.randn(1, 20, 96, 96))
    for down, enc in zip(net.down, net.encoder):
        x = enc(down(x))
    assert x.shape == (1, 256, 12, 12)


def test_network_block_input_equals_per_slice_input():
    net = SliceResNet(input_channels=2, num_classes=3, neighbours=2, widths=(8, 16, 32, 64)).eval()
    vol = np.random.default_rng(0).normal(size=(2, 6, 16, 16)).astype(np.float32)
    with torch.no_grad():
        block = net(torch.from_numpy(vol)[None])[0]
        for d in (0, 3, 5):
            single = net(torch.from_numpy(stack_slice(vol, 0, d, 2))[None])[0]
            torch.testing.assert_close(block[:, d], single)


def test_network_rejects_wrong_channel_count():
    net = SliceResNet(input_channels=4, num_classes=5, neighbours=2)
    with pytest.raises(ValueError, match="20 channels"):
        net(torch.randn(1, 7, 96, 96))


def test_cli_env_prints_trainer_folder():
    out = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "env"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("export nnUNet_extTrainer=")
    assert "trainer_discovery" in out


def test_network_block_with_zero_padding_equals_unpadded_block():
    """nnU-Net zero-pads volumes thinner than its window; the padded slices must not act as neighbours."""
    net = SliceResNet(input_channels=2, num_classes=3, neighbours=2, widths=(8, 16, 32, 64)).eval()
    vol = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 5, 16, 16)).astype(np.float32))
    padded = torch.nn.functional.pad(vol, (0, 0, 0, 0, 3, 4))  # 3 zero slices before, 4 after
    with torch.no_grad():
        plain = net(vol[None])[0]
        from_padded = net(padded[None])[0]
        empty = net(torch.zeros(1, 10, 16, 16))[0]
    torch.testing.assert_close(from_padded[:, 3:8], plain)
    torch.testing.assert_close(from_padded[:, 0], empty)
    torch.testing.assert_close(from_padded[:, -1], empty)
